/**
 * sluice core: runtime-free (Web APIs only) streaming gateway primitives.
 * @module
 */
export { SluiceError, TimeoutError } from './errors.ts'
export type { SluiceErrorCode } from './errors.ts'
