/* ezr_bus.cpp - the command bus over the Verilator model of ez_accel (see ezr_bus.h). */
#include "ezr_bus.h"

#include "Vez_accel.h"
#include "verilated.h"

#ifndef EZR_PAW
#define EZR_PAW 11
#endif
#ifndef EZR_XAW
#define EZR_XAW 12
#endif
#ifndef EZR_AAW
#define EZR_AAW 7
#endif
#ifndef EZR_LAW
#define EZR_LAW 2
#endif

static Vez_accel *top;
static uint64_t cycles;

static void tick(void)
{
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    cycles++;
}

extern "C" void ezr_open(void)
{
    if (!top)
        top = new Vez_accel;
    top->cmd_valid = 0;
    top->rst = 1;
    tick();
    tick();
    top->rst = 0;
    cycles = 0;
}

extern "C" void ezr_close(void)
{
    if (top) {
        top->final();
        delete top;
        top = nullptr;
    }
}

extern "C" uint32_t ezr_cmd(unsigned op, unsigned addr, uint32_t data)
{
    while (top->busy)
        tick();
    top->cmd_op = op;
    top->cmd_addr = addr;
    top->cmd_data = data;
    top->cmd_valid = 1;
    tick();
    top->cmd_valid = 0;
    while (top->busy)
        tick();
    return top->rdata;
}

extern "C" uint64_t ezr_cycles(void) { return cycles; }
extern "C" unsigned ezr_max_params(void) { return 1u << EZR_PAW; }
extern "C" unsigned ezr_max_inputs(void) { return 1u << EZR_XAW; }
extern "C" unsigned ezr_max_width(void) { return 1u << EZR_AAW; }
extern "C" unsigned ezr_max_layers(void) { return 1u << EZR_LAW; }
