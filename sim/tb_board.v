// dwconv board testbench: runs a self-checking board design's netlist (the one its bitstream
// is placed and routed from) on its clock pin and waits for its pass or fail LED.
//
// The design holds the input frames and the golden output in ROMs and compares every output
// beat itself (sim/board.py, SelfCheck).  Defines name its top module and pins:
//   BOARD_TOP, CLK_PIN, PASS_PIN, FAIL_PIN; PASS_ON, FAIL_ON: the pin levels of a lit LED.
// MAX_CYCLES: give up (FAIL).  Prints "PASS <cycles>" or "FAIL <why>" and finishes.
`timescale 1ns / 1ps

module tb_board;
    parameter MAX_CYCLES = 1000000;

    reg clk = 1'b0;
    wire clk_pin, pass_pin, fail_pin;
    assign clk_pin = clk;

    `BOARD_TOP board(.`CLK_PIN(clk_pin), .`PASS_PIN(pass_pin), .`FAIL_PIN(fail_pin));

    integer cycle;
    initial begin
        for (cycle = 0; cycle < MAX_CYCLES; cycle = cycle + 1) begin
            #5 clk = 1'b1;
            #5 clk = 1'b0;
            if (fail_pin === `FAIL_ON) begin
                $display("FAIL the design's fail LED lit after %0d cycles", cycle);
                $finish;
            end
            if (pass_pin === `PASS_ON) begin
                $display("PASS %0d", cycle);
                $finish;
            end
        end
        $display("FAIL no LED lit after %0d cycles", MAX_CYCLES);
        $finish;
    end
endmodule
