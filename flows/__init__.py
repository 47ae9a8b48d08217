"""Tool flows on the generated Verilog: lint, synthesis, post-synthesis simulation,
board builds, formal proofs, and the one way tools are run."""
