// Simulation model of the ECP5 block RAM DP16KD, written from Lattice's "ECP5 and ECP5-5G
// Memory Usage Guide" (FPGA-TN-02204): yosys's cells_sim.v holds only an empty module of it.
//
// 18 kbit, two ports with their own clocks, the same DATA_WIDTH on both (18 x 1024, 9 x
// 2048, 4 x 4096, 2 x 8192, 1 x 16384: the word address is on ADx13 down, the low pins
// unused; in the 18-bit form ADx1..0 are byte write enables).  Per port, on a rising clock
// edge with CE high and the port selected (CSx2..0 equal to CSDECODE_x):
//   WE low: the data latch takes the word at the address;
//   WE high: DI is written; the latch keeps its value (WRITEMODE "NORMAL"), takes the word
//   written ("WRITETHROUGH") or the word that was there ("READBEFOREWRITE").
// REGMODE "NOREG": DO is the latch; "OUTREG": DO is a register that takes the latch on each
// edge with OCE high.  RST clears the latch and the output register, on the edge
// (RESETMODE "SYNC") or at once ("ASYNC").  The memory and registers start at zero.
// Not modelled, and reported as an error if used: different widths on the two ports and
// initial contents (INITVAL_xx).  Not modelled: collisions between the ports at one
// address (the hardware's result is undefined too), GSR, ASYNC_RESET_RELEASE.
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

    localparam WIDTH = DATA_WIDTH_A;
    // address bits of the configuration: 10 for 18-bit words, up to 14 for 1-bit words
    localparam ABITS = WIDTH == 18 ? 10 : WIDTH == 9 ? 11 : WIDTH == 4 ? 12 :
                       WIDTH == 2 ? 13 : 14;

    // the array as bits: word n of a port is bits n*WIDTH .. n*WIDTH+WIDTH-1; the functions
    // are automatic, since both ports call them on one clock edge
    reg bits [0:18431];
    integer n;
    initial begin
        for (n = 0; n < 18432; n = n + 1)
            bits[n] = 1'b0;
        if (DATA_WIDTH_A != DATA_WIDTH_B ||
            !(WIDTH == 18 || WIDTH == 9 || WIDTH == 4 || WIDTH == 2 || WIDTH == 1))
            $display("ERROR: DP16KD model: DATA_WIDTH_A %0d, DATA_WIDTH_B %0d not modelled",
                     DATA_WIDTH_A, DATA_WIDTH_B);
        if ((INITVAL_00 |
        INITVAL_01 |
        INITVAL_02 |
        INITVAL_03 |
        INITVAL_04 |
        INITVAL_05 |
        INITVAL_06 |
        INITVAL_07 |
        INITVAL_08 |
        INITVAL_09 |
        INITVAL_0A |
        INITVAL_0B |
        INITVAL_0C |
        INITVAL_0D |
        INITVAL_0E |
        INITVAL_0F |
        INITVAL_10 |
        INITVAL_11 |
        INITVAL_12 |
        INITVAL_13 |
        INITVAL_14 |
        INITVAL_15 |
        INITVAL_16 |
        INITVAL_17 |
        INITVAL_18 |
        INITVAL_19 |
        INITVAL_1A |
        INITVAL_1B |
        INITVAL_1C |
        INITVAL_1D |
        INITVAL_1E |
        INITVAL_1F |
        INITVAL_20 |
        INITVAL_21 |
        INITVAL_22 |
        INITVAL_23 |
        INITVAL_24 |
        INITVAL_25 |
        INITVAL_26 |
        INITVAL_27 |
        INITVAL_28 |
        INITVAL_29 |
        INITVAL_2A |
        INITVAL_2B |
        INITVAL_2C |
        INITVAL_2D |
        INITVAL_2E |
        INITVAL_2F |
        INITVAL_30 |
        INITVAL_31 |
        INITVAL_32 |
        INITVAL_33 |
        INITVAL_34 |
        INITVAL_35 |
        INITVAL_36 |
        INITVAL_37 |
        INITVAL_38 |
        INITVAL_39 |
        INITVAL_3A |
        INITVAL_3B |
        INITVAL_3C |
        INITVAL_3D |
        INITVAL_3E |
        INITVAL_3F) !== 320'h0)
            $display("ERROR: DP16KD model: initial contents (INITVAL_xx) not modelled");
    end

    // "0bXYZ" -> 3'bXYZ (the low bit of each digit's character code)
    function automatic [2:0] decode(input [39:0] text);
        decode = {text[16], text[8], text[0]};
    endfunction

    function automatic [17:0] read_word(input [13:0] ad);
        integer k;
        reg [13:0] address;
        begin
            address = ad >> (14 - ABITS);
            read_word = 18'd0;
            for (k = 0; k < WIDTH; k = k + 1)
                read_word[k] = bits[address * WIDTH + k];
        end
    endfunction

    task automatic write_word(input [13:0] ad, input [17:0] di, input [1:0] enables);
        integer k;
        reg [13:0] address;
        begin
            address = ad >> (14 - ABITS);
            for (k = 0; k < WIDTH; k = k + 1)
                if (enables[k / 9])
                    bits[address * WIDTH + k] = di[k];
        end
    endtask

    // ---- port A
    wire [13:0] ad_A = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4,
                        ADA3, ADA2, ADA1, ADA0};
    wire [17:0] di_A = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9,
                        DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire selected_A = {CSA2, CSA1, CSA0} == decode(CSDECODE_A);
    // 18 bits: ADx1..0 enable the halves DI[8:0] and DI[17:9]; narrower words have none
    wire [1:0] bytes_A = DATA_WIDTH_A == 18 ? {ADA1, ADA0} : 2'b11;
    reg [17:0] latch_A = 18'd0, out_A = 18'd0, old_A;
    always @(posedge CLKA) begin
        if (RSTA && RESETMODE == "SYNC") begin
            latch_A <= 18'd0;
            out_A <= 18'd0;
        end else begin
            if (OCEA)
                out_A <= latch_A;
            if (CEA && selected_A) begin
                old_A = read_word(ad_A);
                if (WEA) begin
                    write_word(ad_A, di_A, bytes_A);
                    if (WRITEMODE_A == "READBEFOREWRITE")
                        latch_A <= old_A;
                    else if (WRITEMODE_A == "WRITETHROUGH")
                        latch_A <= read_word(ad_A);
                end else
                    latch_A <= old_A;
            end
        end
    end
    always @(posedge RSTA)
        if (RESETMODE == "ASYNC") begin
            latch_A <= 18'd0;
            out_A <= 18'd0;
        end
    wire [17:0] do_A = REGMODE_A == "OUTREG" ? out_A : latch_A;
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7,
            DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = do_A;

    // ---- port B
    wire [13:0] ad_B = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4,
                        ADB3, ADB2, ADB1, ADB0};
    wire [17:0] di_B = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9,
                        DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire selected_B = {CSB2, CSB1, CSB0} == decode(CSDECODE_B);
    // 18 bits: ADx1..0 enable the halves DI[8:0] and DI[17:9]; narrower words have none
    wire [1:0] bytes_B = DATA_WIDTH_B == 18 ? {ADB1, ADB0} : 2'b11;
    reg [17:0] latch_B = 18'd0, out_B = 18'd0, old_B;
    always @(posedge CLKB) begin
        if (RSTB && RESETMODE == "SYNC") begin
            latch_B <= 18'd0;
            out_B <= 18'd0;
        end else begin
            if (OCEB)
                out_B <= latch_B;
            if (CEB && selected_B) begin
                old_B = read_word(ad_B);
                if (WEB) begin
                    write_word(ad_B, di_B, bytes_B);
                    if (WRITEMODE_B == "READBEFOREWRITE")
                        latch_B <= old_B;
                    else if (WRITEMODE_B == "WRITETHROUGH")
                        latch_B <= read_word(ad_B);
                end else
                    latch_B <= old_B;
            end
        end
    end
    always @(posedge RSTB)
        if (RESETMODE == "ASYNC") begin
            latch_B <= 18'd0;
            out_B <= 18'd0;
        end
    wire [17:0] do_B = REGMODE_B == "OUTREG" ? out_B : latch_B;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7,
            DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = do_B;
endmodule
