/* crc32c.h - CRC-32C (Castagnoli), the checksum of the data dir's files. */
#ifndef RAFTKV_CRC32C_H
#define RAFTKV_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Checksum of n bytes at p. Start with crc = 0; to checksum data in pieces,
 * pass the previous result as crc: crc32c(crc32c(0, a, na), b, nb) equals the
 * checksum of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
