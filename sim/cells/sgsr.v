// SGSR, ECP5's synchronous global set/reset, for post-synthesis simulation of board designs.
//
// amaranth's ECP5 platform makes its reset-less sync domain by driving SGSR (active-low GSR)
// from two flip-flops that start at 0: the global reset is held for the first cycles after
// configuration, then released, unless the board's reset input is pressed.  In the cell
// models every flip-flop already starts at its initial (reset) value, so from power-on with
// the reset released this cell has nothing left to do: it is a model with no behaviour, and
// a testbench that needs a mid-run global reset cannot use it.
module SGSR (input GSR, input CLK);
endmodule
