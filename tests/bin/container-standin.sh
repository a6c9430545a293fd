# Shared body of the docker, podman and kubectl stand-ins (sourced by them, so $0 names the tool).
#
# These machines have no container engine and no cluster. A stand-in accepts exactly the command
# line execwire builds and runs the command here, like the real tool runs it in the container:
#   docker exec -i [OPTIONS] NAME CMD...      podman exec -i [OPTIONS] NAME CMD...
#   kubectl exec -i [OPTIONS] POD -- CMD...
# Known containers and pods: $STANDIN_CONTAINERS (space-separated; default "box"). An unknown
# name or a missing CMD fails with the real tool's message and exit code. The command sees
# EXECWIRE_STANDIN=TOOL:NAME, so a test can tell it really went through the stand-in.
tool=$(basename "$0")
if [ "$1" != exec ] || [ "$2" != -i ]; then
    echo "$tool stand-in: only '$tool exec -i ...' is supported, got: $tool $*" >&2
    exit 2
fi
shift 2
while [ $# -gt 0 ]; do
    case "$1" in
        -e|--env) export "$2"; shift 2 ;;
        -u|--user|-w|--workdir|-n|--namespace|-c|--container) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
name=$1
shift
if [ "$tool" = kubectl ]; then
    if [ "$1" != -- ]; then
        echo "error: kubectl stand-in: expected '--' after the pod name, got: $*" >&2
        exit 2
    fi
    shift
fi
case " ${STANDIN_CONTAINERS:-box} " in
    *" $name "*) ;;
    *)
        case "$tool" in
            docker) echo "Error response from daemon: No such container: $name" >&2; exit 1 ;;
            podman) echo "Error: no container with name or ID \"$name\" found: no such container" >&2; exit 125 ;;
            kubectl) echo "Error from server (NotFound): pods \"$name\" not found" >&2; exit 1 ;;
        esac ;;
esac
if ! command -v "$1" >/dev/null 2>&1; then
    case "$tool" in
        docker) echo "OCI runtime exec failed: exec failed: unable to start container process: exec: \"$1\": executable file not found in \$PATH: unknown" >&2; exit 126 ;;
        podman) echo "Error: crun: executable file \`$1\` not found in \$PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found" >&2; exit 127 ;;
        kubectl) echo "error: Internal error occurred: error executing command in container: failed to exec in container: starting container process caused: exec: \"$1\": executable file not found in \$PATH: unknown" >&2; exit 1 ;;
    esac
fi
export EXECWIRE_STANDIN="$tool:$name"
exec "$@"
