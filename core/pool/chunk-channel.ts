/**
 * The chunk channel: byte streams from worker threads to the main thread over MessagePorts, with credit-based
 * flow control, batching, in-order lifecycle events, cancellation and worker-failure handling.
 * Main thread: `ChunkReaderHub`; worker: `ChunkWriterHub`. See each module for the protocol details.
 * @module
 */
export { ChunkReaderHub } from './chunk-channel-reader-hub.ts'
export type { ChunkLink, ChunkReaderHubOptions, OpenReaderOptions } from './chunk-channel-reader-hub.ts'
export type { ChunkReader } from './chunk-channel-reader.ts'
export { ChunkWriterHub } from './chunk-channel-writer-hub.ts'
export type { ChunkWriterHubOptions } from './chunk-channel-writer-hub.ts'
export type { ChunkWriter } from './chunk-channel-writer.ts'
export type { ChunkChannelHandle } from './chunk-channel-protocol.ts'
export type { ChunkPort } from './chunk-channel-port.ts'
export { reasonFromWire, reasonToWire } from './chunk-channel-reason.ts'
