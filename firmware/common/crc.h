/*
 * crc.h — the two CRCs the firmware needs.
 *
 * crc16_ccitt_false: poly 0x1021, init 0xFFFF, no reflection, no xor-out. Protects radio frames
 *   (check value: "123456789" -> 0x29B1).
 * crc8_sht3x: poly 0x31, init 0xFF, no reflection, no xor-out, as in the Sensirion SHT3x
 *   datasheet (example: 0xBE 0xEF -> 0x92).
 *
 * Bitwise implementations: a few hundred bytes a second do not justify 512 bytes of table flash.
 */
#ifndef FW_CRC_H
#define FW_CRC_H

#include <stddef.h>
#include <stdint.h>

uint16_t crc16_ccitt_false(const uint8_t *data, size_t len);
uint8_t crc8_sht3x(const uint8_t *data, size_t len);

#endif
