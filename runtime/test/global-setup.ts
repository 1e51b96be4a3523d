// Replaced by the Postgres test harness (template database per migration hash) in the foundation change.
export default function setup(): void {}
