/**
 * A 281-byte static x86-64 Linux program that fixes what a clone's kernel
 * carries over from its parent, in the one process: given 8 bytes on stdin
 * (a signed little-endian offset in ns) it moves CLOCK_REALTIME by them
 * (clock_gettime + clock_settime: no delay between reading the clock and
 * setting it), then makes the CRNG reseed now (open /dev/urandom, ioctl
 * RNDRESEEDCRNG). Exit code: the errno of the step that failed, 0 when all
 * went. Under TCG it runs in ~10 ms where date and perl cost 0.35-0.5 s.
 * Seeded as /run/banger-seed/clock-reseed (mode 0700) into every VM banger
 * boots, so a clone of it finds it ready; older guests get it by printf +
 * chmod. Guests of other architectures use date and perl.
 *
 * One ELF header, one PT_LOAD (R+X, file offset 0 at 0x400000), entry 0x400078:
 *   48 83 ec 20             sub  rsp, 32
 *   31 c0                   xor  eax, eax              ; read
 *   31 ff                   xor  edi, edi              ; stdin
 *   48 8d 74 24 10          lea  rsi, [rsp+16]
 *   ba 08 00 00 00          mov  edx, 8
 *   0f 05                   syscall
 *   48 83 f8 08             cmp  rax, 8
 *   75 48                   jne  reseed                ; no offset: reseed only
 *   b8 e4 00 00 00          mov  eax, 228              ; clock_gettime
 *   31 ff                   xor  edi, edi              ; CLOCK_REALTIME
 *   48 89 e6                mov  rsi, rsp
 *   0f 05                   syscall
 *   85 c0                   test eax, eax
 *   75 5f                   jnz  exit
 *   48 8b 04 24             mov  rax, [rsp]            ; tv_sec
 *   48 69 c0 00 ca 9a 3b    imul rax, rax, 1000000000
 *   48 03 44 24 08          add  rax, [rsp+8]          ; + tv_nsec
 *   48 03 44 24 10          add  rax, [rsp+16]         ; + offset
 *   31 d2                   xor  edx, edx
 *   b9 00 ca 9a 3b          mov  ecx, 1000000000
 *   48 f7 f1                div  rcx
 *   48 89 04 24             mov  [rsp], rax            ; tv_sec
 *   48 89 54 24 08          mov  [rsp+8], rdx          ; tv_nsec
 *   b8 e3 00 00 00          mov  eax, 227              ; clock_settime
 *   31 ff                   xor  edi, edi
 *   48 89 e6                mov  rsi, rsp
 *   0f 05                   syscall
 *   85 c0                   test eax, eax
 *   75 27                   jnz  exit
 * reseed:
 *   b8 02 00 00 00          mov  eax, 2                ; open
 *   48 8d 3d 26 00 00 00    lea  rdi, [rip+0x26]       ; "/dev/urandom"
 *   be 01 00 00 00          mov  esi, 1                ; O_WRONLY
 *   0f 05                   syscall
 *   85 c0                   test eax, eax
 *   78 10                   js   exit
 *   89 c7                   mov  edi, eax              ; fd
 *   b8 10 00 00 00          mov  eax, 16               ; ioctl
 *   be 07 52 00 00          mov  esi, 0x5207           ; RNDRESEEDCRNG
 *   31 d2                   xor  edx, edx
 *   0f 05                   syscall
 * exit:
 *   89 c7                   mov  edi, eax
 *   f7 df                   neg  edi                   ; exit code = errno, 0 on success
 *   b8 3c 00 00 00          mov  eax, 60               ; exit
 *   0f 05                   syscall
 *   "/dev/urandom", NUL
 */
export const CLOCK_RESEED_ELF: Uint8Array = Uint8Array.from(Buffer.from(
  "7f454c4602010100000000000000000002003e00010000007800400000000000400000000000000000000000000000000000000040003800010040000000000001000000050000000000000000000000000040000000000000004000000000001901000000000000190100000000000000100000000000004883ec2031c031ff488d742410ba080000000f054883f8087548b8e400000031ff4889e60f0585c0755f488b04244869c000ca9a3b4803442408480344241031d2b900ca9a3b48f7f1488904244889542408b8e300000031ff4889e60f0585c07527b802000000488d3d26000000be010000000f0585c0781089c7b810000000be0752000031d20f0589c7f7dfb83c0000000f052f6465762f7572616e646f6d00",
  "hex",
));
