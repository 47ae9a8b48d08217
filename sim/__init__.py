"""Simulators of the engines: Amaranth's, compiled Verilator/Icarus testbenches, cocotb,
and golden vectors for any Verilog testbench."""
