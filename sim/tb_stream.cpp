// Verilator main for tb_stream.v: toggles the clock until the testbench calls $finish.
//
// The testbench (Verilog, shared with Icarus) does the work: stalls, weight loads, framing
// checks and its own cycle limit, so this loop never runs Python and never hangs.  Only the
// beats go through here (DPI functions below), as binary files held in memory: Verilator's
// $fscanf/$fwrite parse and format text a bit at a time and took more time than the engine.
// File format: each beat as ceil(bits/32) 32-bit words, least significant first, in the
// machine's byte order (little-endian on x86 and ARM), beats back to back.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vtb_stream.h"
#include "Vtb_stream__Dpi.h"
#include "verilated.h"

namespace {
std::vector<uint32_t> input, output;
size_t next_beat = 0, beat = 0;

const char* plusarg(int argc, char** argv, const char* name) {
    const size_t length = std::strlen(name);
    for (int i = 1; i < argc; ++i)
        if (argv[i][0] == '+' && std::strncmp(argv[i] + 1, name, length) == 0
            && argv[i][1 + length] == '=')
            return argv[i] + 2 + length;
    return nullptr;
}

bool read_file(const char* path, std::vector<uint32_t>& words) {
    FILE* file = std::fopen(path, "rb");
    if (!file) return false;
    std::fseek(file, 0, SEEK_END);
    const long bytes = std::ftell(file);
    std::fseek(file, 0, SEEK_SET);
    words.resize(static_cast<size_t>(bytes) / 4);
    const size_t got = std::fread(words.data(), 4, words.size(), file);
    std::fclose(file);
    return got == words.size();
}
}  // namespace

// the next input beat of `chunks` words: 1, or 0 when the file has no more (zeros then)
int dwconv_in_next(int chunks) {
    beat = next_beat;
    next_beat += static_cast<size_t>(chunks);
    return next_beat <= input.size();
}

int dwconv_in_chunk(int index) {
    const size_t at = beat + static_cast<size_t>(index);
    return at < input.size() ? static_cast<int>(input[at]) : 0;
}

void dwconv_out_chunk(int value) { output.push_back(static_cast<uint32_t>(value)); }

int main(int argc, char** argv) {
    const char* in_path = plusarg(argc, argv, "in");
    const char* out_path = plusarg(argc, argv, "out");
    if (!in_path || !out_path || !read_file(in_path, input)) {
        std::fprintf(stderr, "tb_stream: give readable +in=FILE and +out=FILE\n");
        return 2;
    }
    const std::unique_ptr<VerilatedContext> context{new VerilatedContext};
    context->commandArgs(argc, argv);
    const std::unique_ptr<Vtb_stream> top{new Vtb_stream{context.get()}};
    top->clk = 0;
    top->eval();
    while (!context->gotFinish()) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }
    top->final();
    FILE* file = std::fopen(out_path, "wb");
    if (!file || std::fwrite(output.data(), 4, output.size(), file) != output.size()) {
        std::fprintf(stderr, "tb_stream: cannot write %s\n", out_path);
        return 2;
    }
    std::fclose(file);
    return 0;
}
