// Names for VMs made without one (`vm run` with no --name): two words a
// person can read and type, like Docker's container names.

const ADJECTIVES = [
  "able", "amber", "bold", "brave", "brisk", "calm", "clever", "cosy", "crisp", "daring",
  "eager", "fair", "fancy", "fleet", "fond", "gentle", "glad", "golden", "grand", "happy",
  "hardy", "honest", "humble", "jolly", "keen", "kind", "lively", "lucky", "merry", "mighty",
  "modest", "neat", "nimble", "noble", "patient", "plucky", "polite", "proud", "quick", "quiet",
  "rapid", "ready", "shiny", "silent", "sleek", "snowy", "steady", "sunny", "swift", "tidy",
  "trusty", "vivid", "warm", "wise", "witty", "zesty",
] as const;

const NOUNS = [
  "badger", "beaver", "bison", "cedar", "comet", "condor", "coral", "crane", "dingo", "dolphin",
  "falcon", "ferret", "finch", "fjord", "gecko", "glacier", "heron", "ibex", "jackal", "koala",
  "lark", "lemur", "lynx", "magpie", "maple", "marmot", "meadow", "moose", "newt", "ocelot",
  "orca", "osprey", "otter", "owl", "panda", "pebble", "pelican", "pine", "puffin", "quokka",
  "raven", "reef", "robin", "salmon", "seal", "sparrow", "spruce", "stork", "tapir", "thrush",
  "tiger", "trout", "walrus", "willow", "wombat", "yak",
] as const;

/**
 * A free `adjective-noun` name (valid as a VM name), or with a number after
 * it once the random tries keep hitting taken ones. `random` returns [0, 1)
 * (Math.random in the CLI; fixed sequences in tests).
 */
export function pickVMName(taken: ReadonlySet<string>, random: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length) % xs.length]!;
  for (let i = 0; i < 20; i++) {
    const name = `${pick(ADJECTIVES)}-${pick(NOUNS)}`;
    if (!taken.has(name)) return name;
  }
  const base = `${pick(ADJECTIVES)}-${pick(NOUNS)}`;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}
