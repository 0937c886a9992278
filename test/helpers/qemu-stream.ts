// Migration streams as QEMU 7.2 writes them, for tests of plugins/qemu/ram-delta.ts and its caller.
import { PAGE } from "../../plugins/qemu/ram-delta.ts";

export const MAGIC = [0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3];
export const be32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
export const be64 = (n: number) => [...be32(Math.floor(n / 2 ** 32)), ...be32(n >>> 0)];
export const str = (s: string) => [...new TextEncoder().encode(s)];
export const named = (s: string) => [s.length, ...str(s)];
export const footer = (id: number) => [0x7e, ...be32(id)];

/** A stream as QEMU 7.2 saves one with x-ignore-shared: configuration, RAM sections (START, PART, END), device sections, EOF, description. */
export function mappedStream(o: { ignoreShared?: boolean; partId?: number; pageFlags?: number } = {}): { bytes: Uint8Array; ramEnd: number; description: number[] } {
  const config = [0x07, ...be32(10), ...str("pc-q35-7.2"), 0x05, ...named("configuration/capabilities"), ...be32(1), ...be32(1), ...named(o.ignoreShared === false ? "x-other-cap" : "x-ignore-shared")];
  const blocks = [...named("pc.ram"), ...be64(256 << 20), ...be64(0), ...named("pc.bios"), ...be64(0x40000), ...be64(0xfffc0000)];
  const start = [1, ...be32(2), ...named("ram"), ...be32(0), ...be32(4), ...be64(((256 << 20) + 0x40000) | 0x04), ...blocks, ...be64(0x10), ...footer(2)];
  const page = new Array<number>(PAGE).fill(0xab);
  const part = [2, ...be32(o.partId ?? 2), ...be64(0 | (o.pageFlags ?? 0x08)), ...named("pc.bios"), ...page, ...be64(PAGE | 0x02 | 0x20), 0, ...be64(0x10), ...footer(2)];
  const end = [3, ...be32(2), ...be64(0x10), ...footer(2)];
  const devices = [4, ...be32(3), ...named("timer"), ...be32(0), ...be32(2), ...str("OLD-DEVICE-STATE"), ...footer(3), 0];
  const json = str('{"page_size": 4096, "devices": []}');
  const description = [6, ...be32(json.length), ...json];
  const head = [...MAGIC, ...config, ...start, ...part, ...end];
  return { bytes: new Uint8Array([...head, ...devices, ...description]), ramEnd: head.length, description };
}

/** A device stream as xen-save-devices-state writes one: the header, then `body` (device sections and EOF). */
export const deviceStream = (body: number[]) => new Uint8Array([...MAGIC, ...body]);
/** One device section and EOF. */
export const NEW_DEVICES = [4, ...be32(3), ...named("timer"), ...be32(0), ...be32(2), ...str("NEW-DEVICE-STATE"), ...footer(3), 0];

/**
 * A whole stream as QEMU 7.2 saves a stopped VM's without x-ignore-shared (RAM pages of pc.ram and pc.bios, one
 * zero page and one page filled with 0x5a of pc.ram), and the stream splitWholeStream should make of it: the
 * capability named, each block's address (0) in the list, no record of pc.ram.
 */
export function wholeStream(): { bytes: Uint8Array; split: Uint8Array; ramPages: { offset: number; data: number[] }[] } {
  const config = [0x07, ...be32(10), ...str("pc-q35-7.2")];
  const caps = [0x05, ...named("configuration/capabilities"), ...be32(1), ...be32(1), ...named("x-ignore-shared")];
  const list = (addr: boolean) => [...named("pc.ram"), ...be64(256 << 20), ...(addr ? be64(0) : []), ...named("pc.bios"), ...be64(0x40000), ...(addr ? be64(0) : [])];
  const startHead = [1, ...be32(2), ...named("ram"), ...be32(0), ...be32(4), ...be64(((256 << 20) + 0x40000) | 0x04)];
  const start = (addr: boolean) => [...startHead, ...list(addr), ...be64(0x10), ...footer(2)];
  const page = (b: number) => new Array<number>(PAGE).fill(b);
  const ramA = [...be64(0x3000 | 0x08), ...named("pc.ram"), ...page(1)];
  const ramB = [...be64(0x4000 | 0x08 | 0x20), ...page(2)];
  const ramZero = [...be64(0x9000 | 0x02 | 0x20), 0];
  const ramFill = [...be64(0xa000 | 0x02 | 0x20), 0x5a];
  const bios = [...be64(0 | 0x08), ...named("pc.bios"), ...page(0xab)];
  const biosNext = [...be64(PAGE | 0x02 | 0x20), 0];
  const ramAgain = [...be64(0x5000 | 0x08), ...named("pc.ram"), ...page(3)];
  const part = (body: number[]) => [2, ...be32(2), ...body, ...be64(0x10), ...footer(2)];
  const end = [3, ...be32(2), ...be64(0x10), ...footer(2)];
  const devices = [4, ...be32(3), ...named("timer"), ...be32(0), ...be32(2), ...str("DEVICE-STATE"), ...footer(3), 0];
  const json = str('{"page_size": 4096, "devices": []}');
  const tail = [...devices, 6, ...be32(json.length), ...json];
  return {
    bytes: new Uint8Array([...MAGIC, ...config, ...start(false), ...part([...ramA, ...ramB, ...ramZero, ...ramFill, ...bios, ...biosNext, ...ramAgain]), ...end, ...tail]),
    split: new Uint8Array([...MAGIC, ...config, ...caps, ...start(true), ...part([...bios, ...biosNext]), ...end, ...tail]),
    ramPages: [
      { offset: 0x3000, data: page(1) },
      { offset: 0x4000, data: page(2) },
      { offset: 0xa000, data: page(0x5a) },
      { offset: 0x5000, data: page(3) },
    ],
  };
}
