// Migration streams as QEMU 7.2 writes them, for tests of plugins/qemu/ram-delta.ts and its caller.
import { PAGE } from "../../plugins/qemu/ram-delta.ts";

export const MAGIC = [0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3];
export const be32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
export const be64 = (n: number) => [...be32(Math.floor(n / 2 ** 32)), ...be32(n >>> 0)];
const str = (s: string) => [...new TextEncoder().encode(s)];
const named = (s: string) => [s.length, ...str(s)];
const footer = (id: number) => [0x7e, ...be32(id)];

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
