// Shell scripts are imported as text (`with { type: "text" }`) so the compiled binary carries them.
declare module "*.sh" {
  const text: string;
  export default text;
}
