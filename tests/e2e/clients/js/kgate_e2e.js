#!/usr/bin/env node
// End-to-end check of a Kafka endpoint (normally kgate) with KafkaJS.
//
// Usage: node kgate_e2e.js <bootstrap> <topic> <group> <records> <compression>
//   compression: none | gzip  (lz4 | snappy | zstd only if a KafkaJS codec package is installed:
//                kafkajs-lz4, kafkajs-snappy, @kafkajs/zstd)
//
// Steps:
//   1. Admin: create <topic> with 3 partitions (an existing topic is fine), describeCluster().
//   2. Produce <records> keyed records with an idempotent producer (acks=all, 1 in flight).
//      tansu 0.6 fails InitProducerId v0-v2, the only versions KafkaJS speaks; then the run
//      falls back to acks=all, 1 in flight, not idempotent (JSON: "idempotent": false), unless
//      KGATE_E2E_STRICT_IDEMPOTENCE=1.
//   3. Consume them in group <group> from earliest, committing offsets explicitly after every
//      batch. Check: no duplicates, nothing missing, offsets and per-key sequences increasing.
//   4. Disconnect, produce 50 more, start a new consumer in the same group and check that it
//      gets exactly those 50 (resumes from the committed offsets).
//   5. Collect every broker address the client learned (describeCluster, partition leaders,
//      FindCoordinator answer) and every address it actually sent requests to.
// The last line on stdout is one JSON object. Exit 0 on success, 1 on failure.
// KafkaJS logs go to stderr (level from KGATE_E2E_LOG: error|warn|info|debug, default warn).
//
// Environment knobs (optional):
//   KGATE_E2E_DEADLINE_S  per consume phase deadline in seconds (default 60)

'use strict'

const crypto = require('crypto')
const { Kafka, logLevel, CompressionTypes, CompressionCodecs, Partitioners } = require('kafkajs')

const PARTITIONS = 3
const KEYS = 12
const RESUME_RECORDS = 50
const CHUNK = 100

const started = Date.now()
const out = {
  client: 'js',
  produced: 0,
  consumed: 0,
  resumed_consumed: 0,
  duplicates: 0,
  missing: 0,
  order_ok: false,
  resumed_ok: false,
}
const brokers = new Set()
const connected = new Set()
const apis = new Set()
const errors = []
let printed = false

function finish(ok) {
  if (printed) return
  printed = true
  out.brokers = [...brokers].sort()
  out.connected = [...connected].sort()
  out.apis = [...apis].sort()
  out.elapsed_ms = Date.now() - started
  out.ok = ok
  if (!ok || errors.length) out.error = errors.length ? errors.slice(0, 10).join('; ') : 'failed'
  process.stdout.write(JSON.stringify(out) + '\n')
}

function exit(code) {
  // Let stdout drain before exiting.
  process.stdout.write('', () => process.exit(code))
}

function errText(e) {
  if (!e) return String(e)
  let s = `${e.name || 'Error'}: ${e.message}`
  if (e.type) s += ` [${e.type}]`
  if (e.cause) s += ` <- ${errText(e.cause)}`
  return s
}

const sleep = ms => new Promise(r => setTimeout(r, ms))

function stderrLogCreator() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log
    let rest = ''
    try {
      rest = JSON.stringify(extra)
    } catch (_) {
      rest = ''
    }
    process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${rest}\n`)
  }
}

function compressionType(name) {
  switch (name) {
    case 'none':
      return CompressionTypes.None
    case 'gzip':
      return CompressionTypes.GZIP
    case 'lz4':
    case 'snappy':
    case 'zstd': {
      const type = { lz4: CompressionTypes.LZ4, snappy: CompressionTypes.Snappy, zstd: CompressionTypes.ZSTD }[name]
      const pkg = { lz4: 'kafkajs-lz4', snappy: 'kafkajs-snappy', zstd: '@kafkajs/zstd' }[name]
      let codec
      try {
        codec = require(pkg)
      } catch (_) {
        throw new Error(`compression ${name} needs the npm package ${pkg}, which is not installed (use none or gzip)`)
      }
      CompressionCodecs[type] = name === 'lz4' ? () => new codec().codec : codec
      return type
    }
    default:
      throw new Error(`unknown compression ${name} (none|gzip|lz4|snappy|zstd)`)
  }
}

function trackRequests(client) {
  client.on(client.events.REQUEST, ({ payload }) => {
    if (payload && payload.broker) connected.add(payload.broker)
    if (payload && payload.apiName) apis.add(payload.apiName)
  })
}

/** Produces n records with keys k00..k11 round robin; value = runId|key|seq|index. */
async function produce(producer, topic, runId, n, firstIndex, nextSeq, expected, compression) {
  let messages = []
  const flush = async () => {
    if (!messages.length) return
    await producer.send({ topic, messages, acks: -1, compression, timeout: 30000 })
    messages = []
  }
  for (let i = 0; i < n; i++) {
    const index = firstIndex + i
    const k = index % KEYS
    const key = 'k' + String(k).padStart(2, '0')
    const seq = nextSeq[k]++
    expected.add(`${key}|${seq}`)
    messages.push({ key, value: `${runId}|${key}|${seq}|${index}` })
    if (messages.length >= CHUNK) await flush()
  }
  await flush()
}

/**
 * Runs a fresh consumer in the group until every expected record was seen and every partition
 * it got records from was read up to the high watermark of the Fetch responses (so duplicates
 * written after the originals would be noticed), or the deadline passes. Commits explicitly
 * after every batch, then disconnects (LeaveGroup). `nextOffsets` collects, per partition, the
 * offset after the last record consumed (what the committed offset must be).
 *
 * ListOffsets is deliberately not used: tansu 0.6 (memory storage) answers "latest" with the
 * last batch's base offset + 1, which is wrong for batches of more than one record.
 */
async function consume(kafka, { topic, group, runId, expected, forbidden, nextOffsets, deadlineS, tag }) {
  const ph = { consumed: 0, duplicates: 0, missing: 0, unexpected: 0, foreign: 0, orderOk: true }
  const seen = new Map()
  const lastOffset = {}
  const lastSeq = {}
  const keyPartition = {}
  const hwm = {}
  let done
  const finished = new Promise(resolve => (done = resolve))
  let isDone = false
  let crashed = false

  // Done when everything was seen and every fetched partition was read up to its high
  // watermark, or 2 s after everything was seen (tansu 0.6's Fetch high watermark is not exact
  // either; the grace period still lets late duplicates show up).
  let allSeenAt = null
  // Also wait until the consumer really joined the group: leaving tansu 0.6 in the middle of a
  // first join wedges the group for good.
  let joined = false
  const complete = () => {
    if (!joined || seen.size < expected.size) return false
    if (allSeenAt === null) allSeenAt = Date.now()
    if (Date.now() - allSeenAt >= 2000) return true
    for (const p of Object.keys(hwm)) {
      if (!(lastOffset[p] !== undefined && lastOffset[p] + 1 >= hwm[p])) return false
    }
    return true
  }

  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  trackRequests(consumer)
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joined = true
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    errors.push(`${tag}: consumer crashed: ${errText(payload && payload.error)}`)
    if (payload && payload.restart === false) crashed = true
  })

  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch, commitOffsetsIfNecessary, heartbeat }) => {
        const p = batch.partition
        const h = Number(batch.highWatermark)
        if (Number.isFinite(h) && h > (hwm[p] || 0)) hwm[p] = h
        let last = null
        for (const m of batch.messages) {
          const offset = Number(m.offset)
          last = offset
          const value = m.value ? m.value.toString() : ''
          const parts = value.split('|')
          if (parts.length !== 4 || parts[0] !== runId) {
            ph.foreign++
            continue
          }
          const key = parts[1]
          const seq = Number(parts[2])
          const id = `${key}|${seq}`
          ph.consumed++
          if (!m.key || m.key.toString() !== key) {
            ph.orderOk = false
            errors.push(`${tag}: key mismatch ${m.key} vs value ${value}`)
          }
          if (lastOffset[p] !== undefined && offset <= lastOffset[p]) {
            ph.orderOk = false
            errors.push(`${tag}: offset went ${lastOffset[p]} -> ${offset} on partition ${p}`)
          }
          if (keyPartition[key] === undefined) keyPartition[key] = p
          else if (keyPartition[key] !== p) {
            ph.orderOk = false
            errors.push(`${tag}: key ${key} seen on partitions ${keyPartition[key]} and ${p}`)
          }
          if (lastSeq[key] !== undefined && seq <= lastSeq[key]) {
            ph.orderOk = false
            if (errors.length < 20) errors.push(`${tag}: key ${key} seq went ${lastSeq[key]} -> ${seq}`)
          }
          lastSeq[key] = seq
          if (forbidden.has(id) || !expected.has(id)) {
            ph.unexpected++
            continue
          }
          const c = (seen.get(id) || 0) + 1
          seen.set(id, c)
          if (c > 1) ph.duplicates++
        }
        if (last !== null) {
          lastOffset[p] = last
          nextOffsets[p] = last + 1
          await commitOffsetsIfNecessary({
            topics: [{ topic, partitions: [{ partition: p, offset: String(last + 1) }] }],
          })
        }
        await heartbeat()
        if (!isDone && complete()) {
          isDone = true
          done()
        }
      },
    })

    const deadline = Date.now() + deadlineS * 1000
    while (!isDone && Date.now() < deadline && !crashed) {
      if (complete()) isDone = true
      else await Promise.race([finished, sleep(100)])
    }
    if (crashed) {
      // already reported by the CRASH listener
    } else if (!isDone) {
      errors.push(`${tag}: deadline ${deadlineS} s passed with ${seen.size}/${expected.size} records seen`)
    }
  } catch (e) {
    errors.push(`${tag}: ${errText(e)}`)
  } finally {
    try {
      await consumer.disconnect()
    } catch (e) {
      errors.push(`${tag} disconnect: ${errText(e)}`)
    }
  }
  ph.missing = expected.size - seen.size
  ph.hwm = hwm
  return ph
}

/** Asks the group coordinator of `group` via the client's (internal) FindCoordinator path. */
async function findCoordinator(kafka, group) {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')
  if (!sym) return null
  const cluster = kafka[sym]({ allowAutoTopicCreation: false })
  await cluster.connect()
  try {
    await cluster.refreshMetadata()
    const md = await cluster.findGroupCoordinatorMetadata({ groupId: group, coordinatorType: 0 })
    if (!md || !md.coordinator) return null
    return md.coordinator
  } finally {
    await cluster.disconnect()
  }
}

/**
 * Connects an idempotent producer (acks=all, 1 in flight). tansu 0.6 answers InitProducerId
 * v0-v2 (KafkaJS only speaks v0/v1) with UNKNOWN_SERVER_ERROR, so unless
 * KGATE_E2E_STRICT_IDEMPOTENCE=1 fall back to a plain producer with acks=all and 1 request in
 * flight; the record-level checks stay the same. The JSON says which one ran.
 */
async function connectProducer(kafka) {
  const common = {
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  }
  const idem = kafka.producer({ ...common, idempotent: true })
  trackRequests(idem)
  try {
    await idem.connect()
    out.idempotent = true
    return idem
  } catch (e) {
    await idem.disconnect().catch(() => {})
    out.idempotence_error = errText(e)
    if (process.env.KGATE_E2E_STRICT_IDEMPOTENCE === '1') throw e
    process.stderr.write(`idempotent producer failed (${errText(e)}); falling back to acks=all, 1 in flight\n`)
  }
  const plain = kafka.producer({
    ...common,
    idempotent: false,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  trackRequests(plain)
  await plain.connect()
  out.idempotent = false
  return plain
}

async function run(bootstrap, topic, group, records, compressionName, deadlineS) {
  const runId = crypto.randomBytes(4).toString('hex')
  out.run_id = runId
  const compression = compressionType(compressionName)

  const kafka = new Kafka({
    clientId: `kgate-e2e-js-${runId}`,
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    logLevel: { error: logLevel.ERROR, warn: logLevel.WARN, info: logLevel.INFO, debug: logLevel.DEBUG }[
      (process.env.KGATE_E2E_LOG || 'warn').toLowerCase()
    ] ?? logLevel.WARN,
    logCreator: stderrLogCreator,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  })

  const admin = kafka.admin()
  trackRequests(admin)
  await admin.connect()
  try {
    // ---- 1. topic + cluster ----
    let t0 = Date.now()
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    })
    out.topic_created = created
    let meta
    for (let i = 0; ; i++) {
      meta = await admin.fetchTopicMetadata({ topics: [topic] })
      const parts = meta.topics[0].partitions
      if (parts.length > 0 && parts.every(p => p.leader >= 0)) break
      if (i >= 100) throw new Error(`topic ${topic} has no leaders after 20 s`)
      await sleep(200)
    }
    out.partitions = meta.topics[0].partitions.length

    const dc = await admin.describeCluster()
    const byId = {}
    out.cluster_nodes = dc.brokers.map(b => `${b.nodeId}@${b.host}:${b.port}`)
    for (const b of dc.brokers) {
      byId[b.nodeId] = `${b.host}:${b.port}`
      brokers.add(`${b.host}:${b.port}`)
    }
    out.cluster_id = dc.clusterId
    out.controller = dc.controller != null && byId[dc.controller] ? byId[dc.controller] : null
    out.controller_id = dc.controller
    const addLeaders = m => {
      for (const t of m.topics) {
        for (const p of t.partitions) {
          if (byId[p.leader]) brokers.add(byId[p.leader])
          else if (p.leader >= 0) errors.push(`leader ${p.leader} of ${t.name}/${p.partitionId} not among brokers`)
        }
      }
    }
    addLeaders(meta)
    out.setup_ms = Date.now() - t0

    // ---- 2. produce phase 1 ----
    const producer = await connectProducer(kafka)
    const phase1 = new Set()
    const phase2 = new Set()
    const nextSeq = new Array(KEYS).fill(0)
    const nextOffsets = {}
    try {
      t0 = Date.now()
      await produce(producer, topic, runId, records, 0, nextSeq, phase1, compression)
      out.produced = phase1.size
      out.produce_ms = Date.now() - t0

      // ---- 3. consume phase 1 ----
      t0 = Date.now()
      const p1 = await consume(kafka, {
        topic, group, runId, expected: phase1, forbidden: new Set(), nextOffsets, deadlineS, tag: 'c1',
      })
      out.consumed = p1.consumed
      out.duplicates = p1.duplicates
      out.missing = p1.missing
      out.unexpected = p1.unexpected
      out.foreign = p1.foreign
      out.order_ok = p1.orderOk
      out.consume_ms = Date.now() - t0
      out.fetch_hwm = p1.hwm

      // ---- 4. produce 50 more, resume in the same group ----
      t0 = Date.now()
      await produce(producer, topic, runId, RESUME_RECORDS, records, nextSeq, phase2, compression)
      out.produced = phase1.size + phase2.size
      const p2 = await consume(kafka, {
        topic, group, runId, expected: phase2, forbidden: phase1, nextOffsets, deadlineS, tag: 'c2',
      })
      out.resumed_consumed = p2.consumed
      out.resumed_duplicates = p2.duplicates
      out.resumed_missing = p2.missing
      out.resumed_redelivered = p2.unexpected
      const resumedOk = p2.consumed === RESUME_RECORDS && p2.duplicates === 0 && p2.missing === 0 &&
        p2.unexpected === 0 && p2.orderOk
      out.resumed_ok = resumedOk
      out.resume_ms = Date.now() - t0

      // ---- 5. coordinator, leaders, committed offsets ----
      try {
        const c = await findCoordinator(kafka, group)
        if (c) {
          out.coordinator = `${c.host}:${c.port}`
          out.coordinator_id = c.nodeId
          brokers.add(out.coordinator)
        }
      } catch (e) {
        errors.push(`findGroupCoordinator: ${errText(e)}`)
      }
      addLeaders(await admin.fetchTopicMetadata({ topics: [topic] }))
      const dc2 = await admin.describeCluster()
      for (const b of dc2.brokers) brokers.add(`${b.host}:${b.port}`)

      const committed = {}
      const fo = await admin.fetchOffsets({ groupId: group, topics: [topic] })
      for (const t of fo) for (const p of t.partitions) committed[p.partition] = Number(p.offset)
      out.committed = committed
      let commitOk = true
      for (const p of Object.keys(nextOffsets)) {
        if (committed[p] !== nextOffsets[p]) commitOk = false
      }
      out.commit_ok = commitOk
      if (!commitOk) {
        errors.push(`committed offsets ${JSON.stringify(committed)} != consumed up to ${JSON.stringify(nextOffsets)}`)
      }

      const ok = p1.duplicates === 0 && p1.missing === 0 && p1.unexpected === 0 && p1.orderOk &&
        resumedOk && commitOk && errors.length === 0
      if (!ok && errors.length === 0) errors.push('verification failed')
      return ok
    } finally {
      await producer.disconnect().catch(e => errors.push(`producer disconnect: ${errText(e)}`))
    }
  } finally {
    await admin.disconnect().catch(e => errors.push(`admin disconnect: ${errText(e)}`))
  }
}

async function main() {
  const args = process.argv.slice(2)
  if (args.length !== 5) {
    process.stderr.write('usage: node kgate_e2e.js <bootstrap> <topic> <group> <records> <compression>\n')
    process.exit(2)
  }
  const [bootstrap, topic, group, recordsArg, compressionArg] = args
  const records = Number.parseInt(recordsArg, 10)
  if (!Number.isInteger(records) || records < 0) {
    process.stderr.write(`records must be a non-negative integer: ${recordsArg}\n`)
    process.exit(2)
  }
  const compression = compressionArg.toLowerCase()
  const deadlineS = Number(process.env.KGATE_E2E_DEADLINE_S) > 0 ? Number(process.env.KGATE_E2E_DEADLINE_S) : 60
  Object.assign(out, { bootstrap, topic, group, compression })
  out.missing = records

  // Watchdog: whatever hangs, print the JSON and exit within a bound.
  const watchdogMs = (2 * deadlineS + 40) * 1000
  setTimeout(() => {
    errors.push(`watchdog: run exceeded ${watchdogMs} ms`)
    finish(false)
    exit(1)
  }, watchdogMs).unref()

  let ok = false
  try {
    ok = await run(bootstrap, topic, group, records, compression, deadlineS)
  } catch (e) {
    errors.push(errText(e))
    process.stderr.write(`${e && e.stack}\n`)
    ok = false
  }
  finish(ok)
  exit(ok ? 0 : 1)
}

process.on('unhandledRejection', e => {
  process.stderr.write(`unhandled rejection: ${e && e.stack}\n`)
})

main()
