// Simulation model of the ECP5 sysDSP multiplier MULT18X18D, written from Lattice's
// "ECP5 and ECP5-5G sysDSP Usage Guide" (FPGA-TN-02205, MULT18X18D primitive): yosys ships
// only a blackbox of it, so post-synthesis netlists that use it could not be simulated.
//
// P = A * B (36 bits), each operand signed when its SIGNEDA/SIGNEDB pin is high.  Up to three
// register stages, each enabled by its REG_*_CLK parameter ("NONE" or "CLK0".."CLK3"):
//   input (A with SIGNEDA, B with SIGNEDB) -> multiplier -> pipeline -> output -> P
// Each register uses the clock, clock enable and reset its REG_*_CLK/_CE/_RST parameters name;
// RESETMODE "SYNC" resets on the clock edge, "ASYNC" at once.  Registers start at zero (the
// state after configuration; GSR is not modelled).  Not modelled: the C input (unused by the
// multiplier), cascade (SOURCEA/SOURCEB select SRIA/SRIB in place of A/B, nothing more),
// MULT_BYPASS and the CLKn_DIV/HIGHSPEED_CLK options.
`timescale 1ns / 1ps
module MULT18X18D (
    input  A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input  B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input  C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input  SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input  CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input  SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8,
           SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input  SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8,
           SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
           SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
           SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8,
           ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8,
           ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0,
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8,
           ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
           P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2,
           P1, P0,
    output SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] a_pin = SOURCEA ? {SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11,
        SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0}
        : {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_pin = SOURCEB ? {SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11,
        SRIB10, SRIB9, SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0}
        : {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [3:0] clks = {CLK3, CLK2, CLK1, CLK0};
    wire [3:0] ces = {CE3, CE2, CE1, CE0};
    wire [3:0] rsts = {RST3, RST2, RST1, RST0};

    // the last character of "CLKn"/"CEn"/"RSTn" is the digit n
    function integer index(input [8*4-1:0] name);
        index = name[7:0] - "0";
    endfunction

    // input registers: the operand and its sign control travel together
    wire [18:0] a_in, b_in;
    mult18x18d_stage #(.WIDTH(19), .CLK(REG_INPUTA_CLK), .CLK_N(index(REG_INPUTA_CLK)),
                       .CE_N(index(REG_INPUTA_CE)), .RST_N(index(REG_INPUTA_RST)),
                       .RESETMODE(RESETMODE))
        input_a (.clks(clks), .ces(ces), .rsts(rsts), .d({SIGNEDA, a_pin}), .q(a_in));
    mult18x18d_stage #(.WIDTH(19), .CLK(REG_INPUTB_CLK), .CLK_N(index(REG_INPUTB_CLK)),
                       .CE_N(index(REG_INPUTB_CE)), .RST_N(index(REG_INPUTB_RST)),
                       .RESETMODE(RESETMODE))
        input_b (.clks(clks), .ces(ces), .rsts(rsts), .d({SIGNEDB, b_pin}), .q(b_in));

    // the product of two 19-bit values (each sign- or zero-extended) is exact in 36 bits
    wire signed [18:0] a_ext = {a_in[18] & a_in[17], a_in[17:0]};
    wire signed [18:0] b_ext = {b_in[18] & b_in[17], b_in[17:0]};
    wire signed [37:0] full = a_ext * b_ext;
    wire [36:0] product = {a_in[18] | b_in[18], full[35:0]};

    wire [36:0] piped, result;
    mult18x18d_stage #(.WIDTH(37), .CLK(REG_PIPELINE_CLK), .CLK_N(index(REG_PIPELINE_CLK)),
                       .CE_N(index(REG_PIPELINE_CE)), .RST_N(index(REG_PIPELINE_RST)),
                       .RESETMODE(RESETMODE))
        pipeline (.clks(clks), .ces(ces), .rsts(rsts), .d(product), .q(piped));
    mult18x18d_stage #(.WIDTH(37), .CLK(REG_OUTPUT_CLK), .CLK_N(index(REG_OUTPUT_CLK)),
                       .CE_N(index(REG_OUTPUT_CE)), .RST_N(index(REG_OUTPUT_RST)),
                       .RESETMODE(RESETMODE))
        output_ (.clks(clks), .ces(ces), .rsts(rsts), .d(piped), .q(result));

    assign {SIGNEDP, P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21,
            P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
            P2, P1, P0} = result;
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6,
            ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a_in[17:0];
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
            SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_in[17:0];
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6,
            ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b_in[17:0];
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
            SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_in[17:0];
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6,
            ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = {C17, C16, C15, C14, C13, C12, C11, C10,
            C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};
endmodule

// One optional register of MULT18X18D: a wire when CLK is "NONE".
module mult18x18d_stage #(
    parameter WIDTH = 1,
    parameter CLK = "NONE",
    parameter integer CLK_N = 0,
    parameter integer CE_N = 0,
    parameter integer RST_N = 0,
    parameter RESETMODE = "SYNC"
) (
    input  [3:0] clks, ces, rsts,
    input  [WIDTH-1:0] d,
    output [WIDTH-1:0] q
);
    generate
        if (CLK == "NONE") begin : bypass
            assign q = d;
        end else begin : register
            reg [WIDTH-1:0] r = 0;
            if (RESETMODE == "ASYNC") begin : async_reset
                always @(posedge clks[CLK_N] or posedge rsts[RST_N])
                    if (rsts[RST_N]) r <= 0;
                    else if (ces[CE_N]) r <= d;
            end else begin : sync_reset
                always @(posedge clks[CLK_N])
                    if (rsts[RST_N]) r <= 0;
                    else if (ces[CE_N]) r <= d;
            end
            assign q = r;
        end
    endgenerate
endmodule
