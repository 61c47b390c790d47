#!/usr/bin/env bash
# One pulumi command for CI, reported whatever its outcome:
#   .github/scripts/pulumi-run.sh preview|drift|up <stack>
#   preview  pulumi preview with the stack's policy pack
#   drift    the same with --refresh --expect-no-changes: fails when the live resources differ from the code
#   up       pulumi up with the stack's policy pack, always with --refresh (README: without it Pulumi does not
#            see what the scheduled scaling actions changed; with schedules, ignore_changes keeps the bounds),
#            after tools/preflight.py: a change that needs two updates fails the job before anything changes
# The output goes to the log and the job summary, and for a pull request (PR_NUMBER set) to one comment per
# stack and command, edited on every push. The comment and the summary are written before the exit, so a
# failed preview still shows why. Exit status: pulumi's, or the preflight's when it stops an up.
# Environment: STACK_NAME (the backend's name of <stack>, e.g. org/dev), GITHUB_STEP_SUMMARY; UPDATE_MESSAGE
# for up; PR_NUMBER, GITHUB_REPOSITORY and GH_TOKEN for the comment.
set -uo pipefail

mode=${1:-}
stack=${2:-}
if [[ ! "$stack" =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
  echo "::error::pulumi-run.sh: stack must be a stack file's name (Pulumi.<stack>.yaml), not '${stack}'"
  exit 2
fi
policy=(--policy-pack policy --policy-pack-config "policy/config.${stack}.json")
common=(--stack "${STACK_NAME:?STACK_NAME is not set}" --non-interactive --suppress-progress --color never)
case "$mode" in
  preview) cmd=(pulumi preview "${common[@]}" --diff "${policy[@]}") ;;
  drift) cmd=(pulumi preview "${common[@]}" --diff --refresh --expect-no-changes "${policy[@]}") ;;
  up) cmd=(pulumi up "${common[@]}" --yes --refresh "${policy[@]}" --message "${UPDATE_MESSAGE:-CI}") ;;
  *)
    echo "::error::pulumi-run.sh: the command must be preview, drift or up, not '${mode}'"
    exit 2 ;;
esac

log=$(mktemp)
report=$(mktemp)
status=0
refused=""
if [ "$mode" = up ]; then
  preflight=(venv/bin/python tools/preflight.py --stack "$STACK_NAME")
  echo "+ ${preflight[*]}" | tee "$log"
  "${preflight[@]}" 2>&1 | tee -a "$log"
  status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] || refused="yes"
fi
if [ -z "$refused" ]; then
  echo "+ ${cmd[*]}"
  "${cmd[@]}" 2>&1 | tee -a "$log"
  status=${PIPESTATUS[0]}
fi

if [ -n "$refused" ]; then
  verdict="NOT RUN: tools/preflight.py stopped it (exit ${status}); nothing changed, its lines below say why and what to run"
elif [ "$status" -eq 0 ]; then
  verdict="succeeded"
elif [ "$mode" = drift ] && grep -q "no changes were expected" "$log"; then
  verdict="DRIFT: the live resources differ from the code (the diff below; \`pulumi up --refresh\` restores the code's state)"
else
  verdict="FAILED (exit ${status})"
fi
marker="<!-- pulumi-run:${mode}:${stack} -->"
{
  echo "$marker"
  echo "### \`pulumi ${mode}\` of \`${STACK_NAME}\`: ${verdict}"
  echo
  echo "Commit ${GITHUB_SHA:-unknown}, run ${GITHUB_RUN_ID:-local}."
  echo
  echo '<details open><summary>output (last 60,000 characters)</summary>'
  echo
  echo '~~~text'
  tail -c 60000 "$log"
  echo
  echo '~~~'
  echo '</details>'
} > "$report"
cat "$report" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"

if [ -n "${PR_NUMBER:-}" ]; then
  if [[ ! "$PR_NUMBER" =~ ^[0-9]+$ ]]; then
    echo "::error::PR_NUMBER must be a pull request number, not '${PR_NUMBER}'"
    exit 2
  fi
  comments="repos/${GITHUB_REPOSITORY}/issues/${PR_NUMBER}/comments"
  # Only our own earlier comment is edited: one with the marker, written by the workflow's token.
  existing=$(gh api "$comments" --paginate --jq ".[] | select(.user.login == \"github-actions[bot]\")
    | select(.body | startswith(\"${marker}\")) | .id" | tail -n 1) || existing=""
  if [ -n "$existing" ]; then
    gh api --method PATCH "repos/${GITHUB_REPOSITORY}/issues/comments/${existing}" -F "body=@${report}" >/dev/null
  else
    gh api --method POST "$comments" -F "body=@${report}" >/dev/null
  fi || echo "::warning::Could not comment on pull request #${PR_NUMBER} (the job summary has the output)."
fi
rm -f "$log" "$report"
exit "$status"
