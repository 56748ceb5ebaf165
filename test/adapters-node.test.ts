/**
 * sluice/node specifics, in-process: the request-body direction of backpressure, bodiless responses, repeated
 * headers, and what Node accepts but the Fetch API does not.
 */
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import { serve } from '../adapters/node/mod.ts'
import type { Server } from '../adapters/node/mod.ts'
import { deferred } from '../core/abort.ts'
import { rawRequest } from './_contract.ts'

const MiB = 1024 * 1024
let server: Server | undefined

afterEach(async () => {
  await server?.close({ force: true })
  server = undefined
})

async function start(handler: (request: Request) => Response | Promise<Response>): Promise<string> {
  server = serve(handler, { port: 0 })
  return (await server.ready()).url
}

/** Resolves with `read()` once it has not changed for `quietMs` (bounded by `timeoutMs`). */
function settled(read: () => number, quietMs: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let last = read()
    let lastChange = Date.now()
    const started = Date.now()
    const timer = setInterval(() => {
      const now = read()
      if (now !== last) {
        last = now
        lastChange = Date.now()
      } else if (Date.now() - lastChange >= quietMs) {
        clearInterval(timer)
        resolve(now)
      }
      if (Date.now() - started > timeoutMs) {
        clearInterval(timer)
        reject(new Error(`still changing after ${timeoutMs} ms (${now})`))
      }
    }, 20)
  })
}

/** Writes `total` bytes in 64 KiB chunks, waiting for 'drain' whenever the socket buffer is full. */
async function upload(socket: Socket, total: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 120)
  for (let sent = 0; sent < total; sent += chunk.byteLength) {
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve))
  }
}

describe('sluice/node', () => {
  test('a handler that does not read the request body slows the upload down (backpressure to the client)', async () => {
    const firstChunk = deferred<void>()
    const release = deferred<void>()
    const url = await start(async (request) => {
      const reader = request.body!.getReader()
      let total = (await reader.read()).value!.byteLength
      firstChunk.resolve()
      await release.promise
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        total += value.byteLength
      }
      return Response.json({ total })
    })
    const total = 64 * MiB
    const { port } = new URL(url)
    const socket = connect({ host: '127.0.0.1', port: Number(port) })
    await new Promise((resolve) => socket.once('connect', resolve))
    let response = ''
    socket.on('data', (data: Buffer) => (response += data.toString('latin1')))
    socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`)
    const uploading = upload(socket, total)
    await firstChunk.promise
    // Only socket buffers (a few MiB) and the body stream's 64 KiB may fill while nobody reads.
    const accepted = await settled(() => socket.bytesWritten, 300, 15_000)
    expect(accepted).toBeLessThan(16 * MiB)
    release.resolve()
    await uploading
    await new Promise((resolve) => socket.once('close', resolve))
    expect(response).toMatch(/^HTTP\/1\.1 200/)
    expect(response).toContain(JSON.stringify({ total }))
  })

  test('a HEAD response carries no body, and the unread body is cancelled', async () => {
    const cancelled = deferred<void>()
    const url = await start(() => {
      const body = new ReadableStream({
        pull: (controller) => controller.enqueue(new TextEncoder().encode('never sent')),
        cancel: () => cancelled.resolve(),
      })
      return new Response(body, { headers: { 'x-kind': 'stream' } })
    })
    const head = await fetch(`${url}/`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('x-kind')).toBe('stream')
    expect(await head.text()).toBe('')
    await cancelled.promise
  })

  test('repeated Set-Cookie headers stay separate; statusText is kept', async () => {
    const url = await start(() => {
      const headers = new Headers([
        ['set-cookie', 'a=1; Path=/'],
        ['set-cookie', 'b=2; Path=/'],
        ['x-trace', 'one'],
      ])
      return new Response('ok', { status: 201, statusText: 'Made It', headers })
    })
    const connection = await rawRequest(url, '/')
    await connection.closed
    const head = connection.text().split('\r\n\r\n')[0]!
    expect(head).toMatch(/^HTTP\/1\.1 201 Made It\r\n/)
    expect(head.match(/^set-cookie: .*$/gim)).toEqual(['set-cookie: a=1; Path=/', 'set-cookie: b=2; Path=/'])
    expect(head).toMatch(/^x-trace: one$/im)
  })

  test('a Host the Fetch API rejects gets a 400 JSON error, not a crash', async () => {
    let calls = 0
    const url = await start(() => new Response(`call ${++calls}`))
    // Node's parser lets a space through in Host; `new Request('http://bad host/')` throws.
    const broken = connect({ host: '127.0.0.1', port: Number(new URL(url).port) })
    let text = ''
    broken.on('data', (data: Buffer) => (text += data.toString('latin1')))
    broken.write('GET / HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n')
    await new Promise((resolve) => broken.once('close', resolve))
    expect(text).toMatch(/^HTTP\/1\.1 400/)
    expect(text.endsWith('\r\n\r\n{"error":{"message":"Bad Request","type":"invalid_request_error"}}')).toBe(true)
    expect(calls).toBe(0)
    expect(await (await fetch(`${url}/`)).text()).toBe('call 1')
  })
})
