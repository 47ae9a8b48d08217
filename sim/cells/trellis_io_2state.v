// TRELLIS_IO, ECP5's I/O cell, for two-state simulators (Verilator), which take neither a
// high-impedance drive nor an inout cell port on an input pin.  ``bundle(two_state=True)``
// renames each instance by its DIR: TRELLIS_IO_INPUT reads its pin, TRELLIS_IO_OUTPUT
// drives it from I (T, the output enable, is ignored: the board designs drive their LEDs
// always).  BIDIR pins are not modelled.
module TRELLIS_IO_INPUT (input B, input I, input T, output O);
    assign O = B;
endmodule

module TRELLIS_IO_OUTPUT (output B, input I, input T, output O);
    assign B = I;
    assign O = 1'b0;
endmodule
