package testenv

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Label keys beside LabelKey: the process that started a container, so a
// later process can remove the containers of one that died (a test timeout
// panics past Main; Ryuk, which would do this, is disabled).
const (
	labelPID  = LabelKey + ".pid"
	labelHost = LabelKey + ".host"
)

// Labels returns the labels testenv puts on its containers: LabelKey "1"
// and the owning process. Use them on containers of your own (e2e) so that
// `make clean-containers` and the orphan reaper cover them too.
func Labels() map[string]string {
	host, _ := os.Hostname()
	return map[string]string{LabelKey: "1", labelPID: strconv.Itoa(os.Getpid()), labelHost: host}
}

// reapOrphans removes containers started by testenv processes of this host
// that no longer run.
func reapOrphans() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := docker(ctx)
	if err != nil {
		return
	}
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelPID))})
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	for _, ct := range list {
		pid, err := strconv.Atoi(ct.Labels[labelPID])
		if err != nil || ct.Labels[labelHost] != host || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
			logf("removed container %.12s (%s) of process %d, which is gone", ct.ID, ct.Image, pid)
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
