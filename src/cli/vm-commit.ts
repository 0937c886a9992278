import { defineCommand } from "./define.ts";
import { jsonArg, out, streamCall } from "./context.ts";

export default defineCommand({
  meta: { name: "commit", description: "Make a stopped VM's system disk a new image (same kernel; SSH keys, histories and logs scrubbed): banger vm commit VM IMAGE" },
  args: {
    vm: { type: "positional", required: true, description: "VM name (stopped)" },
    image: { type: "positional", required: true, description: "New image name" },
    ...jsonArg,
  },
  async run({ args }) {
    const { data: img } = await streamCall("imageCommit", { body: { vm: args.vm, name: args.image } }, { json: !!args.json });
    out(img, !!args.json, () => `committed vm ${args.vm} as image ${img.name} (${(img.sizeBytes / 1048576).toFixed(0)} MiB) in ${img.dir}`);
  },
});
