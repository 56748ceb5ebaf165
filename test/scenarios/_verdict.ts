/**
 * The one line a scenario script prints for the test that spawned it. Runtime-free (no node: import) so the
 * same scenario runs under node, bun and deno.
 */
export const VERDICT_PREFIX = 'SLUICE_VERDICT '

export function report(verdict: unknown): void {
  console.log(VERDICT_PREFIX + JSON.stringify(verdict))
}

/** Runs `main`, reports its result, or reports `{ error }` if it throws: a scenario never dies silently. */
export async function runMain(main: () => Promise<unknown>): Promise<void> {
  try {
    report(await main())
  } catch (error) {
    report({ error: error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error) })
  }
}
