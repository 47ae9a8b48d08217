// Verilator main for a self-checking board design's netlist (sim/board.py, wrapped by
// postsynth.run_board_netlist so its pins are clk, pass and fail): the C++ form of
// tb_board.v.  It toggles the clock and stops when the pass or fail LED lights, or after
// +max_cycles= cycles.  Prints "PASS <cycles>" or "FAIL <why>", the lines tb_board.v prints.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "Vboard.h"
#include "verilated.h"

int main(int argc, char** argv) {
    long max_cycles = 1000000;
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "+max_cycles=", 12) == 0)
            max_cycles = std::atol(argv[i] + 12);
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto board = std::make_unique<Vboard>(context.get());
    board->clk = 0;
    board->eval();
    for (long cycle = 0; cycle < max_cycles; ++cycle) {
        board->clk = 1;
        board->eval();
        board->clk = 0;
        board->eval();
        if (board->fail) {
            std::printf("FAIL the design's fail LED lit after %ld cycles\n", cycle);
            return 0;
        }
        if (board->pass) {
            std::printf("PASS %ld\n", cycle);
            return 0;
        }
    }
    std::printf("FAIL no LED lit after %ld cycles\n", max_cycles);
    return 0;
}
