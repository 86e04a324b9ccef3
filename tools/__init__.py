"""Developer tooling: code generation, the local stack supervisor, broker launcher."""
