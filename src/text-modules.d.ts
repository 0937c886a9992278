// Shell scripts are imported as text (`with { type: "text" }`) so the compiled binary carries them.
declare module "*.sh" {
  const text: string;
  export default text;
}
// The guest's exec agent (plugins/image/exec-agent.pl), installed into images as text.
declare module "*.pl" {
  const text: string;
  export default text;
}
