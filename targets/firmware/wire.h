/*
 * wire.h - framing of the edgezo device protocol v1 (docs/protocol.md, section 1).
 *
 * frame = COBS(header || body || crc16) || 0x00. COBS is Consistent Overhead
 * Byte Stuffing (S. Cheshire, M. Baker, "Consistent Overhead Byte Stuffing",
 * IEEE/ACM Trans. Networking 7(2), 1999); the CRC is CRC-16/CCITT-FALSE
 * (poly 0x1021, init 0xFFFF, no reflection, no final xor; check value of
 * "123456789" = 0x29B1), the same as Python's binascii.crc_hqx(data, 0xFFFF).
 * CRC-32 is the IEEE 802.3 / zlib CRC (reflected poly 0xEDB88320, init and
 * final xor 0xFFFFFFFF; check value 0xCBF43926), used for checkpoints.
 * The host side uses the `cobs` package and binascii/zlib; these are the
 * firmware's own small implementations of the same specifications.
 */
#ifndef EZ_WIRE_H
#define EZ_WIRE_H

#include <stddef.h>
#include <stdint.h>

uint16_t ez_crc16(const uint8_t *data, size_t n);
uint32_t ez_crc32(const uint8_t *data, size_t n);

/* COBS-encode n bytes of src into dst (no delimiter); returns the length written.
 * dst needs n + n / 254 + 1 bytes. src and dst must not overlap. */
size_t ez_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst);

/* COBS-decode n bytes (no delimiter) in place; returns the decoded length or -1 if malformed. */
long ez_cobs_decode(uint8_t *buf, size_t n);

#endif
