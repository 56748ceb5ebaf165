/**
 * The chunk channel: byte streams from worker threads to the main thread, with credit-based flow control,
 * batching, in-order lifecycle events, cancellation and worker-failure handling.
 * Main thread: `ChunkReaderHub` (`attach(port)` per worker, `open()` per stream → `reader.stream`);
 * worker: `ChunkWriterHub` (`open(handle)` → `writer.write()/event()/close()/error()`, `writer.signal`).
 *
 * Transport decision, measured on this machine (2 cores shared with other work, so ranges over 2–3 runs; figures
 * are node / bun / deno; bench/chunk-channel.bench.ts):
 * - MessagePort, not a SharedArrayBuffer ring. With batching, a writer loop moves 3.8–5.6 M / 7.0–8.2 M / 4.6–7.2 M
 *   chunks/s of 64 B and 1,243–1,601 / 999–1,109 / 503–655 MiB/s of 16 KiB chunks through the port: the order
 *   of a raw SAB ring that has no framing, events or cancel (research probe ringbuf.mjs, 64 KiB ring: 3.7 M /
 *   5.3 M / 6.0 M chunks/s of 64 B, 871 / 1,023 / 894 MiB/s at 16 KiB). A ring also needs a fixed buffer per
 *   stream (64 KiB × 10 000 streams = 640 MiB), waitAsync keep-alive handling and its own crash recovery.
 *   Transferred ReadableStreams were never an option (~100× slower per chunk, unsupported on Bun 1.4.5).
 * - One port per worker with streams multiplexed by id, rather than a MessageChannel per stream. A channel costs
 *   9.2 / 2.6 / 18.6–20 KiB RSS (10 000 held) and more setup (open + one chunk + end: 188–296 vs 108–206 µs,
 *   48–94 vs 48–56 µs, 260–286 vs 214–235 µs), and it cannot batch across streams: 1000 concurrent trickling
 *   streams moved 30–40 k vs 79–222 k, 72–136 k vs 566–633 k, 35–36 k vs 207–522 k chunks/s. The protocol works
 *   over either; a per-stream port is just a hub with one stream (`link.close()` it afterwards).
 * - Bytes are copied into one batch buffer per message and that buffer is transferred: no transfer-list entry per
 *   chunk, a producer's chunk is never detached or refused (pooled Buffer slices and SharedArrayBuffer views are
 *   copied, detached or rejected by the three runtimes), and a burst of one stream reaches the consumer as one
 *   chunk (fewer downstream writes: the cost is per chunk). Through a worker, a source stream of 64 B chunks
 *   arrives 1.4–4.6× faster than an in-process pass-through delivers it, 1 KiB about as fast (0.6–2×), 16 KiB at
 *   0.2–0.5× (in-process hands over references; the channel copies and waits a round trip per window).
 * - Credit window default 64 KiB per stream: the memory a stalled client can pin. A bulk stream is bound by one
 *   window per round trip; a 1 MiB window reached 1,941 MiB/s at 16 KiB on Node. SSE needs far less.
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
