// dwconv golden-vector testbench: plain Verilog-2005, no cocotb, no vendor libraries.
//
// Streams input.hex into the generated engine (module `dwconv`, or -DDWCONV_TOP=name) through
// s_axis with simple deterministic pauses, takes m_axis with deterministic backpressure,
// checks every output beat against output.hex (data, tuser = first beat of a frame,
// tlast = last beat of a row) and the engine's error flag, prints PASS or FAIL and finishes.
//
// Files and sizes come from `dwconv vectors`: vectors.json's testbench.parameters holds every
// parameter below, to pass as they are:
//   iverilog -g2012 -s tb_vectors -P tb_vectors.IN_BITS=<value> ... tb_vectors.v dwconv.v
//   vvp a.out +input=DIR/input.hex +output=DIR/output.hex
// Parameters: IN_BITS, OUT_BITS (beat widths), IN_BEATS, OUT_BEATS (all frames),
// IN_ROW_BEATS, IN_FRAME_BEATS, OUT_ROW_BEATS, OUT_FRAME_BEATS (W*C/P, H*W*C/P, and the same
// for the output), MAX_CYCLES (give up: FAIL).
// With -DWEIGHT_PORT (engines made with --weights port) weights.hex (+weights=...) is loaded
// through w_axis first; WEIGHT_BITS and WEIGHT_WORDS then give its width and length.
`timescale 1ns / 1ps
`ifndef DWCONV_TOP
`define DWCONV_TOP dwconv
`endif

module tb_vectors;
    parameter IN_BITS = 8;
    parameter OUT_BITS = 8;
    parameter IN_BEATS = 1;
    parameter OUT_BEATS = 1;
    parameter IN_ROW_BEATS = 1;
    parameter IN_FRAME_BEATS = 1;
    parameter OUT_ROW_BEATS = 1;
    parameter OUT_FRAME_BEATS = 1;
    parameter MAX_CYCLES = 1000000;
    parameter WEIGHT_BITS = 8;
    parameter WEIGHT_WORDS = 1;
    // pause patterns: the source pauses one cycle in SOURCE_PERIOD, the sink one in SINK_PERIOD
    parameter SOURCE_PERIOD = 7;
    parameter SINK_PERIOD = 5;

    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;

    reg [IN_BITS-1:0] inputs [0:IN_BEATS-1];
    reg [OUT_BITS-1:0] expected [0:OUT_BEATS-1];
    reg [8*512-1:0] path;      // a file name of up to 512 characters

    wire s_axis_tready, m_axis_tvalid, m_axis_tuser, m_axis_tlast, error;
    wire [OUT_BITS-1:0] m_axis_tdata;
    reg s_axis_tvalid = 1'b0;
    integer in_index = 0;      // the beat on s_axis (offered while s_axis_tvalid)
    integer out_index = 0;     // the next output beat expected
    integer cycle = 0;
    integer mismatches = 0;
    wire loaded;               // weights are in (always, without a weight port)
    wire m_axis_tready = !rst && (cycle % SINK_PERIOD) != SINK_PERIOD - 1;
    wire source_pause = (cycle % SOURCE_PERIOD) == SOURCE_PERIOD - 1;
    wire [IN_BITS-1:0] s_axis_tdata = inputs[in_index];
    wire s_axis_tuser = (in_index % IN_FRAME_BEATS) == 0;
    wire s_axis_tlast = ((in_index + 1) % IN_ROW_BEATS) == 0;

`ifdef WEIGHT_PORT
    reg [WEIGHT_BITS-1:0] weights [0:WEIGHT_WORDS-1];
    integer weight_index = 0;
    wire w_axis_tready;
    wire w_axis_tvalid = !rst && weight_index < WEIGHT_WORDS;
    wire [WEIGHT_BITS-1:0] w_axis_tdata = weights[weight_index];
    wire w_axis_tlast = weight_index == WEIGHT_WORDS - 1;
    assign loaded = weight_index == WEIGHT_WORDS;
    always @(posedge clk)
        if (w_axis_tvalid && w_axis_tready)
            weight_index <= weight_index + 1;
`else
    assign loaded = 1'b1;
`endif

    `DWCONV_TOP dut (
        .clk(clk), .rst(rst),
        .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready), .s_axis_tuser(s_axis_tuser),
        .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready), .m_axis_tuser(m_axis_tuser),
        .m_axis_tlast(m_axis_tlast),
`ifdef WEIGHT_PORT
        .w_axis_tdata(w_axis_tdata), .w_axis_tvalid(w_axis_tvalid),
        .w_axis_tready(w_axis_tready), .w_axis_tlast(w_axis_tlast),
`endif
        .error(error)
    );

    initial begin
        if (!$value$plusargs("input=%s", path)) path = "input.hex";
        $readmemh(path, inputs);
        if (!$value$plusargs("output=%s", path)) path = "output.hex";
        $readmemh(path, expected);
`ifdef WEIGHT_PORT
        if (!$value$plusargs("weights=%s", path)) path = "weights.hex";
        $readmemh(path, weights);
`endif
        repeat (4) @(posedge clk);
        rst <= 1'b0;
    end

    // source: AXI-Stream rules (a beat once offered stays until taken), pauses between beats
    always @(posedge clk) begin
        cycle <= cycle + 1;
        if (!rst) begin
            if (s_axis_tvalid && s_axis_tready)
                in_index <= in_index + 1;
            if (!s_axis_tvalid || s_axis_tready)
                s_axis_tvalid <= loaded && !source_pause &&
                    in_index + (s_axis_tvalid ? 1 : 0) < IN_BEATS;
        end
    end

    // sink: check each beat taken
    always @(posedge clk) begin
        if (m_axis_tvalid && m_axis_tready) begin
            if (out_index >= OUT_BEATS) begin
                mismatches = mismatches + 1;
                $display("beat %0d: more output beats than the %0d expected", out_index,
                         OUT_BEATS);
            end else if (m_axis_tdata !== expected[out_index]
                    || m_axis_tuser !== ((out_index % OUT_FRAME_BEATS) == 0)
                    || m_axis_tlast !== (((out_index + 1) % OUT_ROW_BEATS) == 0)) begin
                mismatches = mismatches + 1;
                if (mismatches <= 10)
                    $display("beat %0d: got data %h tuser %b tlast %b, expected %h %b %b",
                             out_index, m_axis_tdata, m_axis_tuser, m_axis_tlast,
                             expected[out_index], (out_index % OUT_FRAME_BEATS) == 0,
                             ((out_index + 1) % OUT_ROW_BEATS) == 0);
            end
            out_index <= out_index + 1;
        end
        if (out_index == OUT_BEATS || cycle == MAX_CYCLES) begin
            if (out_index < OUT_BEATS)
                $display("FAIL: %0d of %0d output beats after %0d cycles", out_index,
                         OUT_BEATS, cycle);
            else if (error)
                $display("FAIL: the engine raised its error flag");
            else if (mismatches != 0)
                $display("FAIL: %0d of %0d output beats differ", mismatches, OUT_BEATS);
            else
                $display("PASS: %0d output beats match (%0d input beats, %0d cycles)",
                         OUT_BEATS, IN_BEATS, cycle);
            $finish;
        end
    end
endmodule
