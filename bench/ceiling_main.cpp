// The plain-Verilator ceiling of a hardware-in-the-loop run: the same `systola_hil` model that cocotb
// drives (accelerator, HDL memory model, HDL clock; same Verilator flags, without VPI), driven by this C++
// host instead of cocotb. bench/ceiling.py builds and runs it.
//
// The host does what sim/cocotb_hil.py does, in the same order: reset, PROG_ADDR / PROG_LEN / WATCHDOG
// writes, the CTRL write, one wait for done (bounded by +MAX_CYCLES), register reads, one dump, and
// times the stretch from the CTRL write to done with a wall clock. Plusargs: +PROG_ADDR= +PROG_LEN=
// +WATCHDOG= +MAX_CYCLES= and the memory model's +MEM_IN= +MEM_OUT= +MEM_SIZE=. Register offsets and the
// clock period come from ceiling_regs.h, which bench/ceiling.py writes from emu/contract/regs.py.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "Vsystola_hil.h"
#include "verilated.h"
#include "ceiling_regs.h"

static VerilatedContext* ctx;
static Vsystola_hil* top;

// Next time slot of the model (the HDL clock's next edge); false when nothing is left to simulate.
static bool advance() {
    if (!top->eventsPending()) return false;
    ctx->time(top->nextTimeSlot());
    top->eval();
    return true;
}

// Run to the next rising clock edge. Inputs set after it returns reach the design at the edge after.
static void posedge() {
    uint8_t before = top->clk;
    while (advance() && !(before == 0 && top->clk == 1)) before = top->clk;
}

// One AXI4-Lite write: valid/ready are sampled between edges, after eval() settles the design's
// combinational ready on the inputs just set.
static void csr_write(uint32_t addr, uint32_t data) {
    top->s_axil_awaddr = addr; top->s_axil_wdata = data; top->s_axil_wstrb = 0xf;
    top->s_axil_awvalid = 1; top->s_axil_wvalid = 1; top->s_axil_bready = 1;
    top->eval();
    while (top->s_axil_awvalid || top->s_axil_wvalid) {
        bool aw = top->s_axil_awready, w = top->s_axil_wready;
        posedge();
        if (aw) top->s_axil_awvalid = 0;
        if (w) top->s_axil_wvalid = 0;
        top->eval();
    }
    while (!top->s_axil_bvalid) posedge();
    posedge();
    top->s_axil_bready = 0;
    top->eval();
}

static uint32_t csr_read(uint32_t addr) {
    top->s_axil_araddr = addr; top->s_axil_arvalid = 1; top->s_axil_rready = 1;
    top->eval();
    while (!top->s_axil_arready) posedge();
    posedge();
    top->s_axil_arvalid = 0;
    top->eval();
    while (!top->s_axil_rvalid) posedge();
    uint32_t data = top->s_axil_rdata;
    posedge();
    top->s_axil_rready = 0;
    top->eval();
    return data;
}

static uint64_t plusarg(const char* name, uint64_t fallback) {
    std::string match = ctx->commandArgsPlusMatch(name);
    size_t eq = match.find('=');
    return eq == std::string::npos ? fallback : std::strtoull(match.c_str() + eq + 1, nullptr, 10);
}

int main(int argc, char** argv) {
    ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    top = new Vsystola_hil{ctx};
    uint64_t max_cycles = plusarg("MAX_CYCLES=", 20000000);
    top->rst = 1; top->load = 0; top->dump = 0;
    top->eval();
    for (int i = 0; i < 4; i++) posedge();
    top->rst = 0;
    for (int i = 0; i < 2; i++) posedge();
    csr_write(OFF_PROG_ADDR, plusarg("PROG_ADDR=", 0));
    csr_write(OFF_PROG_LEN, plusarg("PROG_LEN=", 0));
    csr_write(OFF_WATCHDOG, plusarg("WATCHDOG=", 0));

    auto t0 = std::chrono::steady_clock::now();
    csr_write(OFF_CTRL, 1);
    uint64_t limit = ctx->time() + max_cycles * CLOCK_PS;
    while (!top->done && ctx->time() < limit && advance()) {}
    double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!top->done) {
        std::printf("SYSTOLA_CEILING timeout=1 run_seconds=%.6f\n", run_seconds);
        return 0;
    }
    posedge();
    uint32_t status = csr_read(OFF_STATUS), code = csr_read(OFF_ERROR_CODE), pc = csr_read(OFF_ERROR_PC);
    uint64_t cycles = csr_read(OFF_CYCLES_LO) | (uint64_t)csr_read(OFF_CYCLES_HI) << 32;
    uint64_t macs = csr_read(OFF_MACS_LO) | (uint64_t)csr_read(OFF_MACS_HI) << 32;
    top->dump = 1;
    posedge();
    top->dump = 0;
    posedge();
    std::printf("SYSTOLA_CEILING timeout=0 status=%u code=%u pc=%u cycles=%llu macs=%llu run_seconds=%.6f\n",
                status, code, pc, (unsigned long long)cycles, (unsigned long long)macs, run_seconds);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
