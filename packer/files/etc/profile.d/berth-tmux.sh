# Login shells (e.g. SSH over the tailnet) reach the same tmux server as the browser terminal.
# shellcheck shell=sh
BERTH_TMUX_SOCKET=/run/berth-tmux/tmux.sock
export BERTH_TMUX_SOCKET
