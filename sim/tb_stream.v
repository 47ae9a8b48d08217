// dwconv stream testbench: runs the generated engine at the simulator's own speed.
//
// One plain Verilog file for both compiled simulators, so Verilator and Icarus see the same
// stimulus, the same random stalls and count cycles the same way:
//   - with Verilator, top module tb_stream has `clk` as its only port, toggled by
//     tb_stream.cpp;
//   - with Icarus, top module tb_stream has no ports and makes its own clock.
// Python (sim/native_sim.py) writes the files, reads what comes back and compares it with
// the golden model; nothing here knows the expected values.
//
// Design constants (parameters; they belong to the build, like the engine's Verilog):
//   IN_BITS, OUT_BITS      beat widths of s_axis_tdata and m_axis_tdata
//   IN_ROW_BEATS, IN_FRAME_BEATS, OUT_ROW_BEATS, OUT_FRAME_BEATS
//                          W*C/P and H*W*C/P of the input, and the same for the output
//   WEIGHT_BITS, WEIGHT_WORDS  width and count of one weight load's words
// and the macro WEIGHT_PORT for engines made with --weights port (w_axis ports present).
// Run-time plusargs:
//   +in=FILE      input beats (frames back to back): one hex word per line for Icarus;
//                 binary for the Verilator build, each beat as ceil(bits/32) little-endian
//                 32-bit words, read by tb_stream.cpp (DPI), because the run-time library's
//                 $fscanf takes longer than the engine itself there
//   +frames=N     frames in that file
//   +loads=FILE   weight loads (with WEIGHT_PORT): per load a line with the frame index it comes
//                 before (hex), then WEIGHT_WORDS hex words; loads in frame order
//   +out=FILE     output beats taken, in the same format as +in
//   +result=FILE  "name value" lines: cycles and handshake times, error flag, framing problems
//   +stall=T      pause threshold: the source pauses, and the sink holds ready low, in a cycle
//                 when a 32-bit draw of its own xorshift generator is below T (T = p * 2^32)
//   +seed=S       seed of those generators
//   +max_cycles=N stop there even if outputs are missing (never hangs)
// Cycles are numbered from the first edge after reset; `cycles` in the Python report is
// max(last_in + R - 1, last_out) - first_in + 1 (R: the engine's reuse), as the Amaranth
// simulator counts it (amaranth_sim.run_cycles).  The run ends when every output beat is
// taken and every input beat is in (a frame's last outputs can come before its last inputs).
`timescale 1ns / 1ps
`ifndef DWCONV_TOP
`define DWCONV_TOP dwconv
`endif

module tb_stream #(
    parameter IN_BITS = 8,
    parameter OUT_BITS = 8,
    parameter IN_ROW_BEATS = 1,
    parameter IN_FRAME_BEATS = 1,
    parameter OUT_ROW_BEATS = 1,
    parameter OUT_FRAME_BEATS = 1,
    parameter WEIGHT_BITS = 8,
    parameter WEIGHT_WORDS = 1,
    parameter RESET_CYCLES = 4
)
`ifdef VERILATOR
    (input wire clk);
`else
    ;
    reg clk = 1'b0;
    always #5 clk = ~clk;
`endif

    localparam [63:0] NONE = 64'hffffffffffffffff;

    // 64-bit counters: the MobileNetV2 bench streams millions of beats
    reg [63:0] cycle = 0, max_cycles, in_taken = 0, out_beats, frames;
    reg [63:0] out_taken = 0, first_in = NONE, last_in = 0, first_out = NONE, last_out = 0;
    reg [63:0] framing_errors = 0, frame_of_next = 0, next_load = NONE;
    reg [31:0] in_row = 0, in_frame = 0, out_row = 0, out_frame = 0, w_taken = 0;
    reg [31:0] stall, seed, rng_source, rng_sink, rng_weights;
    integer in_file, out_file, result_file, loads_file = 0, status;
    reg [8*1024-1:0] path;
    reg done = 1'b0;

    reg rst = 1'b1;
    reg [IN_BITS-1:0] s_axis_tdata = 0;
    reg s_axis_tvalid = 1'b0, s_axis_tuser = 1'b0, s_axis_tlast = 1'b0;
    reg m_axis_tready = 1'b0;
    wire s_axis_tready, m_axis_tvalid, m_axis_tuser, m_axis_tlast, error;
    wire [OUT_BITS-1:0] m_axis_tdata;
    reg [WEIGHT_BITS-1:0] w_axis_tdata = 0;
    // $fscanf writes at once: read into these, then hand over with <= (no race)
    reg [WEIGHT_BITS-1:0] weight_word;
    localparam IN_CHUNKS = (IN_BITS + 31) / 32, OUT_CHUNKS = (OUT_BITS + 31) / 32;
    reg [32*IN_CHUNKS-1:0] in_word;
    reg [32*OUT_CHUNKS-1:0] out_word;

`ifdef VERILATOR
    // beats through memory buffers in tb_stream.cpp, 32 bits at a time
    import "DPI-C" function int dwconv_in_next(input int chunks);
    import "DPI-C" function int dwconv_in_chunk(input int index);
    import "DPI-C" function void dwconv_out_chunk(input int value);
`endif

    task read_in_word;
        integer k;
        begin
`ifdef VERILATOR
            status = dwconv_in_next(IN_CHUNKS);
            for (k = 0; k < IN_CHUNKS; k = k + 1)
                in_word[32*k +: 32] = dwconv_in_chunk(k);
`else
            status = $fscanf(in_file, "%h\n", in_word);
`endif
        end
    endtask

    task write_out_word;
        integer k;
        begin
`ifdef VERILATOR
            out_word = 0;
            out_word[OUT_BITS-1:0] = m_axis_tdata;
            for (k = 0; k < OUT_CHUNKS; k = k + 1)
                dwconv_out_chunk(out_word[32*k +: 32]);
`else
            $fwrite(out_file, "%h\n", m_axis_tdata);
`endif
        end
    endtask
    reg w_axis_tvalid = 1'b0, w_axis_tlast = 1'b0;
    wire w_axis_tready;

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
        .error(error));
`ifndef WEIGHT_PORT
    assign w_axis_tready = 1'b0;
`endif

    // xorshift32: cheap, and the same sequence in every simulator (unlike $random)
    function [31:0] xorshift(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xorshift = y ^ (y << 5);
        end
    endfunction

    // the frame index of the next weight load (NONE when there are no more)
    task read_load_header;
        reg [63:0] index;
        begin
            next_load = NONE;
            if (loads_file != 0) begin
                status = $fscanf(loads_file, "%h\n", index);
                if (status == 1) next_load = index;
            end
        end
    endtask

    task finish;
        begin
            $fwrite(result_file, "cycles_run %0d\nin_taken %0d\nout_taken %0d\n", cycle,
                    in_taken, out_taken);
            $fwrite(result_file, "first_in %0d\nlast_in %0d\nfirst_out %0d\nlast_out %0d\n",
                    first_in, last_in, first_out, last_out);
            $fwrite(result_file, "framing_errors %0d\nerror %0d\nend 1\n", framing_errors,
                    error);
            $fclose(result_file);
`ifndef VERILATOR
            $fclose(out_file);
`endif
            $finish;
        end
    endtask

    initial begin
`ifdef VERILATOR
        in_file = 1;        // opened by tb_stream.cpp
        out_file = 1;
`else
        if (!$value$plusargs("in=%s", path)) path = "input.hex";
        in_file = $fopen(path, "r");
        if (!$value$plusargs("out=%s", path)) path = "output.hex";
        out_file = $fopen(path, "w");
`endif
        if (!$value$plusargs("result=%s", path)) path = "result.txt";
        result_file = $fopen(path, "w");
`ifdef WEIGHT_PORT
        if ($value$plusargs("loads=%s", path)) loads_file = $fopen(path, "r");
`endif
        if (!$value$plusargs("frames=%d", frames)) frames = 1;
        if (!$value$plusargs("stall=%d", stall)) stall = 0;
        if (!$value$plusargs("seed=%d", seed)) seed = 0;
        if (!$value$plusargs("max_cycles=%d", max_cycles)) max_cycles = 1000000;
        if (in_file == 0 || out_file == 0 || result_file == 0) begin
            $display("tb_stream: cannot open the files given by +in, +out and +result");
            $finish;
        end
        // three independent generators; xorshift must never hold 0
        rng_source = xorshift(seed ^ 32'h9e3779b9) | 32'h1;
        rng_sink = xorshift(seed ^ 32'h7f4a7c15) | 32'h2;
        rng_weights = xorshift(seed ^ 32'h94d049bb) | 32'h4;
        out_beats = frames * OUT_FRAME_BEATS;
        read_load_header;
    end

    // Everything happens at the rising edge: first the handshakes this edge completes (the
    // engine's outputs still hold their values from before it), then what the testbench
    // drives in the next cycle, with nonblocking assignments so the engine never races it.
    always @(posedge clk) begin
        if (rst) begin
            cycle = cycle + 1;
            if (cycle == RESET_CYCLES) begin
                rst <= 1'b0;
                cycle = 0;
            end
        end else if (!done) begin
            // --- handshakes of this edge
            if (s_axis_tvalid && s_axis_tready) begin
                if (first_in == NONE) first_in = cycle;
                last_in = cycle;
                in_taken = in_taken + 1;
                in_row = (in_row == IN_ROW_BEATS - 1) ? 0 : in_row + 1;
                in_frame = (in_frame == IN_FRAME_BEATS - 1) ? 0 : in_frame + 1;
                if (in_frame == 0) frame_of_next = frame_of_next + 1;
            end
            if (w_axis_tvalid && w_axis_tready)
                w_taken = w_taken + 1;
            if (m_axis_tvalid && m_axis_tready) begin
                if (first_out == NONE) first_out = cycle;
                last_out = cycle;
                write_out_word;
                if (m_axis_tuser != (out_frame == 0)) begin
                    framing_errors = framing_errors + 1;
                    $fwrite(result_file, "framing beat %0d: tuser=%0d, expected %0d\n",
                            out_taken, m_axis_tuser, out_frame == 0);
                end
                if (m_axis_tlast != (out_row == OUT_ROW_BEATS - 1)) begin
                    framing_errors = framing_errors + 1;
                    $fwrite(result_file, "framing beat %0d: tlast=%0d, expected %0d\n",
                            out_taken, m_axis_tlast, out_row == OUT_ROW_BEATS - 1);
                end
                out_taken = out_taken + 1;
                out_row = (out_row == OUT_ROW_BEATS - 1) ? 0 : out_row + 1;
                out_frame = (out_frame == OUT_FRAME_BEATS - 1) ? 0 : out_frame + 1;
            end
            cycle = cycle + 1;
            if ((out_taken >= out_beats && in_taken >= frames * IN_FRAME_BEATS)
                    || cycle >= max_cycles) begin
                done = 1'b1;
                finish;
            end

            // --- weight port: a load goes in after the previous frame's last input beat was
            // taken and before its own frame's first one is offered
            rng_weights = xorshift(rng_weights);
            if (!w_axis_tvalid || w_axis_tready) begin
                if (w_taken == WEIGHT_WORDS) begin
                    w_taken = 0;
                    read_load_header;
                end
                if (next_load == frame_of_next && in_frame == 0 && rng_weights >= stall) begin
                    status = $fscanf(loads_file, "%h\n", weight_word);
                    w_axis_tdata <= weight_word;
                    w_axis_tvalid <= 1'b1;
                    w_axis_tlast <= w_taken == WEIGHT_WORDS - 1;
                end else
                    w_axis_tvalid <= 1'b0;
            end

            // --- source: a beat once offered stays until taken (AXI-Stream)
            rng_source = xorshift(rng_source);
            if (!s_axis_tvalid || s_axis_tready) begin
                if (frame_of_next < frames && next_load != frame_of_next
                        && rng_source >= stall) begin
                    read_in_word;
                    s_axis_tdata <= in_word[IN_BITS-1:0];
                    s_axis_tvalid <= 1'b1;
                    s_axis_tuser <= in_frame == 0;
                    s_axis_tlast <= in_row == IN_ROW_BEATS - 1;
                end else
                    s_axis_tvalid <= 1'b0;
            end

            // --- sink
            rng_sink = xorshift(rng_sink);
            m_axis_tready <= rng_sink >= stall;
        end
    end
endmodule
