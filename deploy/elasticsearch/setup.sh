#!/usr/bin/env bash
# One-shot setup of the compose stack's Elasticsearch (the es-setup service): least-privilege users
# instead of handing the elastic superuser to every client. Idempotent: PUT replaces role and user,
# so a re-run (docker compose up again) changes the passwords to the current environment's.
#
#   burnline  role burnline_writer: create documents in logs-*-* (log records) and traces-*-*
#             (spans) data streams; auto_configure lets the first write create a data stream from
#             the index template that matches it
#   grafana   role logs_reader: read logs-*-*, for Grafana's Elasticsearch data source
set -euo pipefail

es="${ES_URL:-http://elasticsearch:9200}"
: "${ELASTIC_PASSWORD:?ELASTIC_PASSWORD is required}"
: "${BURNLINE_ES_PASSWORD:?BURNLINE_ES_PASSWORD is required}"
: "${GRAFANA_ES_PASSWORD:?GRAFANA_ES_PASSWORD is required}"

# JSON string body: escape backslashes and double quotes (passwords may contain either).
json_string() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

request() {
    local method=$1 path=$2 body=$3
    curl --silent --show-error --fail-with-body --max-time 30 \
        --user "elastic:${ELASTIC_PASSWORD}" -H 'Content-Type: application/json' \
        -X "$method" "$es$path" --data-binary "$body"
    echo
}

for attempt in $(seq 1 60); do
    if curl --silent --fail --max-time 5 --user "elastic:${ELASTIC_PASSWORD}" \
        "$es/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; then
        break
    fi
    if [ "$attempt" -eq 60 ]; then
        echo "es-setup: Elasticsearch at $es did not become ready (check the elastic password)" >&2
        exit 1
    fi
    sleep 2
done

request PUT /_security/role/burnline_writer '{
  "cluster": ["monitor"],
  "indices": [{"names": ["logs-*-*", "traces-*-*"], "privileges": ["auto_configure", "create_doc", "view_index_metadata"]}]
}'
request PUT /_security/role/logs_reader '{
  "indices": [{"names": ["logs-*-*"], "privileges": ["read", "view_index_metadata"]}]
}'
request PUT /_security/user/burnline "{
  \"password\": $(json_string "$BURNLINE_ES_PASSWORD"),
  \"roles\": [\"burnline_writer\"],
  \"full_name\": \"burnline pipeline\"
}"
request PUT /_security/user/grafana "{
  \"password\": $(json_string "$GRAFANA_ES_PASSWORD"),
  \"roles\": [\"logs_reader\"],
  \"full_name\": \"Grafana (read-only)\"
}"
echo "es-setup: users burnline and grafana are ready"
