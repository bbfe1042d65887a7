#!/bin/sh
# Writes sample application logs (one JSON object a line) for Fluent Bit to tail: a mix of
# severities, some with trace context, at ~5 lines a second. Rotates at ~20 MB like logrotate's
# copytruncate-less "create" mode, which Fluent Bit's tail input follows.
set -eu
dir=/var/log/sample
file="$dir/app.log"
mkdir -p "$dir"
i=0
while :; do
    i=$((i + 1))
    now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
    case $((i % 20)) in
        0) level=error; msg="payment provider timed out after 3000 ms" ;;
        1|2) level=warn; msg="slow query on orders took 850 ms" ;;
        3) level=debug; msg="cache refresh finished" ;;
        *) level=info; msg="handled GET /api/orders/$((i % 500))" ;;
    esac
    trace=$(printf '%032x' "$i")
    span=$(printf '%016x' "$i")
    printf '{"time":"%s","level":"%s","message":"%s","service":"checkout","trace_id":"%s","span_id":"%s","seq":%d}\n' \
        "$now" "$level" "$msg" "$trace" "$span" "$i" >>"$file"
    if [ "$(wc -c <"$file")" -gt 20000000 ]; then
        mv "$file" "$file.1"
    fi
    sleep 0.2
done
