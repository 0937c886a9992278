# shellcheck shell=bash
# Workspace diff (after scratch-repo.sh): `git diff --binary` of everything
# in the guest repo that differs from its HEAD, untracked (not ignored) files
# included.
git -c core.quotepath=false diff --cached --binary --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/
