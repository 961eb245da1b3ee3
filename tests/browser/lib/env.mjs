// The test environment: two network namespaces joined by a veth pair, the
// `peerconnect up` nodes, and Chromium launched inside a namespace.
//
// Why namespaces: the web UI treats loopback clients as the node's owner, so
// a "phone on the LAN" must connect from a non-loopback address. The nodes and
// the owner's browser run in namespace S (where 127.0.0.1 is the owner's
// machine); the guest's browser runs in namespace G and reaches node B at
// S's veth address. Traffic never leaves these two namespaces and loopback.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const sh = (...args) => execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** Why namespaces cannot be made here, or null. */
export function netnsUnavailable() {
  if (process.getuid && process.getuid() !== 0) return 'network namespaces need root';
  try {
    sh('ip', 'netns', 'list');
  } catch (e) {
    return `\`ip netns\` fails: ${String(e.stderr || e.message).trim()}`;
  }
  return null;
}

/** Namespaces S (nodes, owner) and G (guest) on one veth pair; removed by `down()`. */
export function makeNamespaces() {
  const tag = `pcw${process.pid % 100000}`;
  const net = 10 + (process.pid % 200);
  const ns = { s: `${tag}s`, g: `${tag}g`, sIp: `10.78.${net}.1`, gIp: `10.78.${net}.2` };
  const down = () => {
    for (const n of [ns.s, ns.g]) {
      try { sh('ip', 'netns', 'del', n); } catch { /* already gone */ }
    }
  };
  down();
  try {
    sh('ip', 'netns', 'add', ns.s);
    sh('ip', 'netns', 'add', ns.g);
    sh('ip', 'link', 'add', `${tag}a`, 'type', 'veth', 'peer', 'name', `${tag}b`);
    sh('ip', 'link', 'set', `${tag}a`, 'netns', ns.s);
    sh('ip', 'link', 'set', `${tag}b`, 'netns', ns.g);
    sh('ip', '-n', ns.s, 'addr', 'add', `${ns.sIp}/24`, 'dev', `${tag}a`);
    sh('ip', '-n', ns.g, 'addr', 'add', `${ns.gIp}/24`, 'dev', `${tag}b`);
    for (const [n, dev] of [[ns.s, `${tag}a`], [ns.g, `${tag}b`]]) {
      sh('ip', '-n', n, 'link', 'set', 'lo', 'up');
      sh('ip', '-n', n, 'link', 'set', dev, 'up');
    }
  } catch (e) {
    down();
    throw new Error(`cannot make the test namespaces: ${String(e.stderr || e.message).trim()}`);
  }
  ns.down = down;
  return ns;
}

/** Runs a command inside namespace `ns` (or directly when `ns` is null). */
function inNs(ns, cmd, args) {
  return ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args];
}

/**
 * A `peerconnect up --json` node. `events` collects its JSON lines;
 * `waitFor(pred)` resolves with the first line matching.
 */
export class UpNode {
  constructor(bin, ns, name, args) {
    this.dir = mkdtempSync(join(tmpdir(), `pcweb-${name}-`));
    this.name = name;
    this.bin = bin;
    this.ns = ns;
    this.events = [];
    this.waiters = [];
    const [cmd, argv] = inNs(ns, bin, [
      'up', '--json', '--no-discovery', '--data-dir', this.dir, '--name', name,
      '--downloads', join(this.dir, 'downloads'), ...args,
    ]);
    this.proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    this.exited = new Promise((res) => this.proc.on('exit', res));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let e;
      try { e = JSON.parse(line); } catch { return; }
      this.events.push(e);
      this.waiters = this.waiters.filter(([pred, res]) => !(pred(e) && (res(e), true)));
    });
  }

  waitFor(pred, what, ms = 20000) {
    const hit = this.events.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${this.name}: timed out waiting for ${what}`)), ms);
      this.waiters.push([pred, (e) => { clearTimeout(t); res(e); }]);
    });
  }

  /**
   * Waits for `listening` and `web`; sets `port`, `webUrl` (loopback), `pin`
   * and `ownerUrl` (the link that makes a browser on this machine the owner).
   */
  async ready() {
    const l = await this.waitFor((e) => e.event === 'listening', 'listening');
    const w = await this.waitFor((e) => e.event === 'web', 'the web line');
    this.id = l.id;
    this.addr = l.addrs[0];
    this.pin = w.pin;
    this.urls = w.urls;
    this.webUrl = w.urls.find((u) => u.includes('127.0.0.1'));
    this.ownerUrl = w.owner_url;
    if (!this.ownerUrl) throw new Error(`${this.name}: no owner_url in the web line`);
    return this;
  }

  /**
   * Starts a CLI command on this node's data dir (it talks to this node
   * through its control socket). Returns the process with `lines` (stdout's
   * JSON lines so far), `waitFor(pred, what)` and `done` (its exit code).
   */
  cli(args) {
    const [cmd, argv] = inNs(this.ns, this.bin, [...args, '--data-dir', this.dir, '--no-discovery']);
    const proc = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
    proc.lines = [];
    let waiters = [];
    proc.done = new Promise((res) => proc.on('exit', (code) => res(code)));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let e;
      try { e = JSON.parse(line); } catch { return; }
      proc.lines.push(e);
      waiters = waiters.filter(([pred, res]) => !(pred(e) && (res(e), true)));
    });
    proc.waitFor = (pred, what, ms = 20000) => {
      const hit = proc.lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`${this.name} CLI: timed out waiting for ${what}`)), ms);
        waiters.push([pred, (e) => { clearTimeout(t); res(e); }]);
      });
    };
    return proc;
  }

  async stop() {
    if (this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
      await this.exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Launches Chromium inside namespace `ns` (through a wrapper script). */
export async function launch(ns, workdir) {
  let executablePath = CHROMIUM;
  if (ns) {
    executablePath = join(workdir, `chromium-${ns}.sh`);
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  return chromium.launch({ executablePath, args: FLAGS, timeout: 60000 });
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'pcweb-'));
}
