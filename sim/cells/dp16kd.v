// Simulation model of the ECP5 block RAM DP16KD, written from Lattice's "ECP5 and ECP5-5G
// Memory Usage Guide" (FPGA-TN-02204): yosys's cells_sim.v holds only an empty module of it.
//
// 18 kbit, two ports with their own clocks and widths (DATA_WIDTH 18 x 1024, 9 x 2048,
// 4 x 4096, 2 x 8192, 1 x 16384; 36 x 512 pseudo-dual-port, below): the word address is on
// ADx13 down, the low pins unused, except the byte write enables (ADx1..0 for 18 bits,
// ADx3..0 for 36).  The array is 2048 bytes of 9 bits: word a of the 9-, 18- and 36-bit
// forms is bits 9a.., 18a.., 36a.. of it; the narrower forms leave the ninth bit of each
// byte out (so a 9-bit byte holds two 4-bit words).  Per port, on a rising clock
// edge with CE high and the port selected (CSx2..0 equal to CSDECODE_x):
//   WE low: the data latch takes the word at the address;
//   WE high: DI is written; the latch keeps its value (WRITEMODE "NORMAL"), takes the word
//   written ("WRITETHROUGH") or the word that was there ("READBEFOREWRITE").
// REGMODE "NOREG": DO is the latch; "OUTREG": DO is a register that takes the latch on each
// edge with OCE high.  RST clears the latch and the output register, on the edge
// (RESETMODE "SYNC") or at once ("ASYNC").  The registers start at zero.
// INITVAL_xx give the initial contents (see below).  A DATA_WIDTH other than these is
// reported as an error.  Not modelled: collisions between the ports at one address (the
// hardware's result is undefined too), GSR, ASYNC_RESET_RELEASE.
`timescale 1ns / 1ps
module DP16KD (
    input  DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6,
           DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input  ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1,
           ADA0,
    input  CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
           DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input  DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6,
           DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input  ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1,
           ADB0,
    input  CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
           DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter GSR = "ENABLED";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter INIT_DATA = "STATIC";
    parameter WID = 0;
    parameter INITVAL_00 = 320'h0;
    parameter INITVAL_01 = 320'h0;
    parameter INITVAL_02 = 320'h0;
    parameter INITVAL_03 = 320'h0;
    parameter INITVAL_04 = 320'h0;
    parameter INITVAL_05 = 320'h0;
    parameter INITVAL_06 = 320'h0;
    parameter INITVAL_07 = 320'h0;
    parameter INITVAL_08 = 320'h0;
    parameter INITVAL_09 = 320'h0;
    parameter INITVAL_0A = 320'h0;
    parameter INITVAL_0B = 320'h0;
    parameter INITVAL_0C = 320'h0;
    parameter INITVAL_0D = 320'h0;
    parameter INITVAL_0E = 320'h0;
    parameter INITVAL_0F = 320'h0;
    parameter INITVAL_10 = 320'h0;
    parameter INITVAL_11 = 320'h0;
    parameter INITVAL_12 = 320'h0;
    parameter INITVAL_13 = 320'h0;
    parameter INITVAL_14 = 320'h0;
    parameter INITVAL_15 = 320'h0;
    parameter INITVAL_16 = 320'h0;
    parameter INITVAL_17 = 320'h0;
    parameter INITVAL_18 = 320'h0;
    parameter INITVAL_19 = 320'h0;
    parameter INITVAL_1A = 320'h0;
    parameter INITVAL_1B = 320'h0;
    parameter INITVAL_1C = 320'h0;
    parameter INITVAL_1D = 320'h0;
    parameter INITVAL_1E = 320'h0;
    parameter INITVAL_1F = 320'h0;
    parameter INITVAL_20 = 320'h0;
    parameter INITVAL_21 = 320'h0;
    parameter INITVAL_22 = 320'h0;
    parameter INITVAL_23 = 320'h0;
    parameter INITVAL_24 = 320'h0;
    parameter INITVAL_25 = 320'h0;
    parameter INITVAL_26 = 320'h0;
    parameter INITVAL_27 = 320'h0;
    parameter INITVAL_28 = 320'h0;
    parameter INITVAL_29 = 320'h0;
    parameter INITVAL_2A = 320'h0;
    parameter INITVAL_2B = 320'h0;
    parameter INITVAL_2C = 320'h0;
    parameter INITVAL_2D = 320'h0;
    parameter INITVAL_2E = 320'h0;
    parameter INITVAL_2F = 320'h0;
    parameter INITVAL_30 = 320'h0;
    parameter INITVAL_31 = 320'h0;
    parameter INITVAL_32 = 320'h0;
    parameter INITVAL_33 = 320'h0;
    parameter INITVAL_34 = 320'h0;
    parameter INITVAL_35 = 320'h0;
    parameter INITVAL_36 = 320'h0;
    parameter INITVAL_37 = 320'h0;
    parameter INITVAL_38 = 320'h0;
    parameter INITVAL_39 = 320'h0;
    parameter INITVAL_3A = 320'h0;
    parameter INITVAL_3B = 320'h0;
    parameter INITVAL_3C = 320'h0;
    parameter INITVAL_3D = 320'h0;
    parameter INITVAL_3E = 320'h0;
    parameter INITVAL_3F = 320'h0;


    localparam [20479:0] INIT = {
        INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39,
        INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32,
        INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B,
        INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24,
        INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D,
        INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16,
        INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F,
        INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08,
        INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01,
        INITVAL_00};

    // the functions are automatic, since both ports call them on one clock edge
    reg bits [0:18431];
    reg [17:0] slot;
    integer n, k;
    initial begin
        if (abits(DATA_WIDTH_A) == 0 || abits(DATA_WIDTH_B) == 0)
            $display("ERROR: DP16KD model: DATA_WIDTH_A %0d, DATA_WIDTH_B %0d not modelled",
                     DATA_WIDTH_A, DATA_WIDTH_B);
        // INITVAL_xx as yosys's ECP5 memory mapping writes them: 16 slots of 20 bits each,
        // 18 bits of the array in the low bits of each slot, bit n of the array in slot
        // n / 18 of INITVAL_(n / 288)
        for (n = 0; n < 1024; n = n + 1) begin
            slot = INIT[n * 20 +: 18];
            for (k = 0; k < 18; k = k + 1)
                bits[n * 18 + k] = slot[k];
        end
    end

    // "0bXYZ" -> 3'bXYZ (the low bit of each digit's character code)
    function automatic [2:0] decode(input [39:0] text);
        decode = {text[16], text[8], text[0]};
    endfunction

    // address bits of a form: 9 for 36-bit words up to 14 for 1-bit words; 0: no such form
    function automatic integer abits(input integer width);
        abits = width == 36 ? 9 : width == 18 ? 10 : width == 9 ? 11 : width == 4 ? 12 :
                width == 2 ? 13 : width == 1 ? 14 : 0;
    endfunction

    // byte write enables: ADx3..0 for 36-bit words, ADx1..0 for 18-bit ones, none below
    function automatic [3:0] enables(input integer width, input [13:0] ad);
        enables = width == 36 ? ad[3:0] : width == 18 ? {2'b00, ad[1:0]} : 4'b1111;
    endfunction

    // the array bit of bit k of word ``address`` in a ``width``-bit form
    function automatic integer place(input integer width, input integer address,
                                     input integer k);
        integer n;
        begin
            n = address * width + k;
            place = width >= 9 ? n : 9 * (n / 8) + n % 8;
        end
    endfunction

    function automatic [35:0] read_word(input integer width, input [13:0] ad);
        integer k, address;
        begin
            address = ad >> (14 - abits(width));
            read_word = 36'd0;
            for (k = 0; k < width; k = k + 1)
                read_word[k] = bits[place(width, address, k)];
        end
    endfunction

    task automatic write_word(input integer width, input [13:0] ad, input [35:0] di,
                              input [3:0] bytes);
        integer k, address;
        begin
            address = ad >> (14 - abits(width));
            for (k = 0; k < width; k = k + 1)
                if (bytes[k / 9])
                    bits[place(width, address, k)] = di[k];
        end
    endtask

    // the pins of both ports, port A in the low bits
    wire [35:0] di_pins = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9,
                           DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
                           DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9,
                           DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [27:0] ad_pins = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4,
                           ADB3, ADB2, ADB1, ADB0,
                           ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4,
                           ADA3, ADA2, ADA1, ADA0};
    wire [5:0] cs_pins = {CSB2, CSB1, CSB0, CSA2, CSA1, CSA0};
    wire [1:0] clk = {CLKB, CLKA}, ce = {CEB, CEA}, oce = {OCEB, OCEA}, we = {WEB, WEA},
               rst = {RSTB, RSTA};

    // one port each, p = 0 for A, 1 for B; in the 36-bit form only A writes and only B
    // reads
    genvar p;
    generate
        for (p = 0; p < 2; p = p + 1) begin : side
            localparam integer WIDTH = p ? DATA_WIDTH_B : DATA_WIDTH_A;
            localparam REGMODE = p ? REGMODE_B : REGMODE_A;
            localparam WRITEMODE = p ? WRITEMODE_B : WRITEMODE_A;
            localparam CSDECODE = p ? CSDECODE_B : CSDECODE_A;
            localparam WRITES = p == 0 || WIDTH != 36;
            localparam READS = p == 1 || WIDTH != 36;
            wire [13:0] ad = ad_pins[14 * p +: 14];
            wire selected = cs_pins[3 * p +: 3] == decode(CSDECODE);
            wire [3:0] bytes = enables(WIDTH, ad);
            wire [35:0] di = WIDTH == 36 ? di_pins : {18'd0, di_pins[18 * p +: 18]};
            reg [35:0] latch = 36'd0, out = 36'd0, old;
            always @(posedge clk[p]) begin
                if (rst[p] && RESETMODE == "SYNC") begin
                    latch <= 36'd0;
                    out <= 36'd0;
                end else begin
                    if (oce[p])
                        out <= latch;
                    if (ce[p] && selected) begin
                        old = read_word(WIDTH, ad);
                        if (we[p] && WRITES) begin
                            write_word(WIDTH, ad, di, bytes);
                            if (WRITEMODE == "READBEFOREWRITE")
                                latch <= old;
                            else if (WRITEMODE == "WRITETHROUGH")
                                latch <= read_word(WIDTH, ad);
                        end else if (READS)
                            latch <= old;
                    end
                end
            end
            always @(posedge rst[p])
                if (RESETMODE == "ASYNC") begin
                    latch <= 36'd0;
                    out <= 36'd0;
                end
            wire [35:0] data = REGMODE == "OUTREG" ? out : latch;
        end
    endgenerate
    wire [35:0] do_A = side[0].data, do_B = side[1].data;

    // the 36-bit form is pseudo-dual-port: port A writes {DIB, DIA}, port B reads, and its
    // word leaves on DOA (low half) and DOB (high half)
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7,
            DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = DATA_WIDTH_B == 36 ? do_B[17:0]
                                                                            : do_A[17:0];
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7,
            DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = DATA_WIDTH_B == 36 ? do_B[35:18]
                                                                            : do_B[17:0];
endmodule
