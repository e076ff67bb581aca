/*
 * ezr_bus.h - the command bus of the RTL accelerator (ez_accel.v, docs/rtl.md), driven
 * through its Verilator model: one call per command, clocked until the design is idle.
 * Used by the `rtl` firmware (device_rtl.c) and, as a shared library, by the Python test bench.
 */
#ifndef EZR_BUS_H
#define EZR_BUS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { EZR_WR_PARAM = 1, EZR_RD_PARAM, EZR_WR_X, EZR_WR_REG, EZR_GEN, EZR_FORWARD, EZR_RD_OUT, EZR_UPDATE,
       EZR_RD_Z };
enum { EZR_REG_LAYERS = 0, EZR_REG_SEED = 1, EZR_REG_LO = 2, EZR_REG_HI = 3 };
/* layer l's register k (0 in, 1 out, 2 flags: bit 0 relu bit 1 bias, 3 weight base, 4 bias base, 5 m, 6 shift,
 * 7 delta) */
#define EZR_LAYER_REG(l, k) (8u + 8u * (unsigned)(l) + (unsigned)(k))

/* Power on (reset the design); the cycle counter restarts at 0. */
void ezr_open(void);
void ezr_close(void);

/* One command: returns rdata once the design is idle again. */
uint32_t ezr_cmd(unsigned op, unsigned addr, uint32_t data);

/* Clock cycles since ezr_open. */
uint64_t ezr_cycles(void);

/* Capacity of the built design: parameters, batch inputs, widest layer, layers. */
unsigned ezr_max_params(void);
unsigned ezr_max_inputs(void);
unsigned ezr_max_width(void);
unsigned ezr_max_layers(void);

#ifdef __cplusplus
}
#endif

#endif
