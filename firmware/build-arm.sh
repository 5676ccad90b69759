#!/bin/bash
# build-arm.sh — cross-compile the two STM32F446 images and enforce the memory budget.
#
#   firmware/build-arm.sh [OUTDIR]        (default: ./build-arm)
#
# Builds node1.elf and node2.elf (+ .bin/.hex) with Debian's arm-none-eabi-gcc and
# newlib-nano, prints arm-none-eabi-size for each, and fails if either image needs more than
# 48 KB of flash (text + data) or 16 KB of RAM (data + bss, which includes the 4 KB stack and
# 1 KB heap reserved by the linker script). This is what CI runs; it is deliberately separate
# from the host CMake build so that never needs the cross compiler.
#
# It also builds the emulated images node1-qemu.elf and node2-qemu.elf for QEMU's
# netduinoplus2 (board/qemu/, run by firmware/qemu/run.sh): the same application and common
# objects, same flags and linker script, plus the emulated sensors and the sensor model (double
# precision libm). Their sizes are printed; the budget applies to the NUCLEO images only.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-build-arm}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CC=${CC_ARM:-arm-none-eabi-gcc}
FLASH_MAX=$((48 * 1024))
RAM_MAX=$((16 * 1024))

CFLAGS=(-std=c11 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -g
        -ffunction-sections -fdata-sections -ffreestanding -fno-common
        -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
        -I"$HERE/common" -I"$HERE/app")
LDFLAGS=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
         --specs=nano.specs --specs=nosys.specs -nostartfiles
         -T"$HERE/board/stm32f446/stm32f446.ld" -Wl,--gc-sections -Wl,--no-warn-rwx-segments)

COMMON=(common/crc.c common/rframe.c common/sht3x.c common/bme680.c common/telemetry.c
        common/rylr998.c common/linebuf.c common/fwlog.c board/stm32f446/startup.c)
NUCLEO=(board/stm32f446/board.c board/stm32f446/rtt.c)
# netduinoplus2: F4 register definitions and startup shared with the NUCLEO board.
QEMU=(board/qemu/board.c board/qemu/emu_sensors.c board/host/sensor_model.c)
QEMU_INC=(-I"$HERE/board/qemu" -I"$HERE/board/host" -I"$HERE/board/stm32f446")

build() {   # build NAME "EXTRA CFLAGS" SOURCES... [-- EXTRA LDFLAGS]
    local name=$1 extra=$2 objs=() ldextra=()
    shift 2
    mkdir -p "$OUT/$name"
    while (($#)); do
        if [[ $1 == -- ]]; then shift; ldextra=("$@"); break; fi
        local obj
        obj="$OUT/$name/$(basename "${1%.c}").o"
        # shellcheck disable=SC2086  # extra is a word list of flags
        "$CC" "${CFLAGS[@]}" $extra -c "$HERE/$1" -o "$obj"
        objs+=("$obj")
        shift
    done
    "$CC" "${LDFLAGS[@]}" "${objs[@]}" "${ldextra[@]}" -Wl,-Map="$OUT/$name.map" \
        -o "$OUT/$name.elf"
    arm-none-eabi-objcopy -O binary "$OUT/$name.elf" "$OUT/$name.bin"
    arm-none-eabi-objcopy -O ihex "$OUT/$name.elf" "$OUT/$name.hex"
}

build node1 "-I$HERE/board/stm32f446" "${COMMON[@]}" "${NUCLEO[@]}" app/node1.c \
    board/stm32f446/main_node1.c
build node2 "-I$HERE/board/stm32f446" "${COMMON[@]}" "${NUCLEO[@]}" app/node2.c \
    board/stm32f446/main_node2.c
build node1-qemu "${QEMU_INC[*]}" "${COMMON[@]}" "${QEMU[@]}" app/node1.c board/qemu/main_node1.c \
    -- -lm
build node2-qemu "${QEMU_INC[*]}" "${COMMON[@]}" "${QEMU[@]}" app/node2.c board/qemu/main_node2.c \
    -- -lm
arm-none-eabi-size "$OUT/node1-qemu.elf" "$OUT/node2-qemu.elf"

arm-none-eabi-size "$OUT/node1.elf" "$OUT/node2.elf"
fail=0
for name in node1 node2; do
    read -r text data bss _ < <(arm-none-eabi-size "$OUT/$name.elf" | tail -1)
    flash=$((text + data)) ram=$((data + bss))
    awk -v n="$name" -v f="$flash" -v r="$ram" -v fm="$FLASH_MAX" -v rm="$RAM_MAX" 'BEGIN {
        printf "%s: flash %d B (%.1f KB of %d KB), RAM %d B (%.1f KB of %d KB)\n",
               n, f, f / 1024, fm / 1024, r, r / 1024, rm / 1024 }'
    if ((flash > FLASH_MAX)); then echo "FAIL: $name flash $flash > $FLASH_MAX" >&2; fail=1; fi
    if ((ram > RAM_MAX)); then echo "FAIL: $name RAM $ram > $RAM_MAX" >&2; fail=1; fi
done
exit $fail
