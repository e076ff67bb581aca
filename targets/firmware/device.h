/*
 * device.h - the edgezo device: protocol v1 message handling over any byte
 * transport (docs/protocol.md). The same behaviour as edgezo/targets/sim.py:
 * θ, one batch and an update step counter in a static arena; evaluate
 * L(θ + fl32(m_i μ) z(seed_i)) into a perturbed copy; seed-SGD update
 * θ_j ← fl32(θ_j + fl32(a_i z_j)), a_i = fl32(−fl32(lr) fl32(c_i)) via
 * ezdir_axpy, applied at most once per step; the last response cached per
 * (seq, type) so a retransmission is answered, never re-executed.
 *
 * Build-time parameters: EZ_SRAM_BYTES (the profile's SRAM, reported in hello
 * and checked by set model), EZ_MAX_FRAME (the profile's max_frame_bytes),
 * EZ_ARENA_BYTES (the static arena for θ, the perturbed copy, the batch and
 * the activations), EZ_DEVICE_NAME.
 */
#ifndef EZ_DEVICE_H
#define EZ_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifndef EZ_SRAM_BYTES
#define EZ_SRAM_BYTES 262144u
#endif
#ifndef EZ_MAX_FRAME
#define EZ_MAX_FRAME 256u
#endif
#ifndef EZ_ARENA_BYTES
#define EZ_ARENA_BYTES (160u * 1024u)
#endif
#ifndef EZ_DEVICE_NAME
#define EZ_DEVICE_NAME "fw:cortex-m4-256k"
#endif

typedef void (*ez_tx_fn)(const uint8_t *data, size_t n);

/* Power-on (boot_id counts resets). */
void ez_device_init(uint16_t boot_id);

/* Feed received bytes; complete frames are handled and their responses sent through tx. */
void ez_device_feed(const uint8_t *data, size_t n, ez_tx_fn tx);

#endif
