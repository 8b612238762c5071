#!/usr/bin/env bash
# Regenerates rules/gpuscale-*.rules.yml from rules/config.yaml, rules/prices.yaml,
# rules/budgets.yaml and rules/templates/, then checks them with promtool.
set -euo pipefail
cd "$(dirname "$0")/.."
GPUSCALE_UPDATE_RULES=1 cargo test -q -p gpuscale-tests --test rules generated_rules_are_up_to_date
for f in rules/*.rules.yml; do promtool check rules "$f" >/dev/null; done
echo "rules regenerated and checked: $(ls rules/*.rules.yml | tr '\n' ' ')"
