package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/httpx"
)

// newProxy routes by path prefix as the ingress does (/api/users -> auth,
// ..., and every other path to the web client, prefix "/"), serves
// api/openapi.yaml at /openapi.yaml when that file exists and the list of
// routes at /_routes. Without the web client, / is that list too and every
// other path answers with the common JSON errors.
func newProxy(root string, all []Service, backends map[string]string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	routes := map[string]string{}
	var web http.Handler // the web client, when it is part of the stack
	for _, s := range all {
		if s.Prefix == "" {
			continue
		}
		var h http.Handler
		if base, ok := backends[s.Name]; ok {
			target, _ := url.Parse(base)
			name := s.Name
			h = &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.SetURL(target)
					pr.SetXForwarded()
					pr.Out.Host = pr.In.Host // the service sees the host the browser used
				},
				ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
					log.Warn("proxy: backend failed", "service", name, "path", r.URL.Path, "err", err)
					httpx.WriteError(w, r, log, apperr.Wrap(apperr.Unavailable, name+" service is not reachable", err))
				},
			}
			routes[s.Prefix] = base
		} else {
			name := s.Name
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				httpx.WriteError(w, r, log, apperr.New(apperr.Unavailable,
					name+" service is not part of the local stack (services/"+name+" has no main package yet)"))
			})
			routes[s.Prefix] = "not running"
		}
		if s.Prefix == "/" {
			web = h
			continue
		}
		mux.Handle(s.Prefix, h)
		mux.Handle(s.Prefix+"/", h)
	}
	spec := filepath.Join(root, "api", "openapi.yaml")
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		// Looked up per request: the document may be written while the stack runs.
		if _, err := os.Stat(spec); err != nil {
			httpx.WriteError(w, r, log, apperr.New(apperr.NotFound, "api/openapi.yaml does not exist yet"))
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		http.ServeFile(w, r, spec)
	})
	mux.HandleFunc("GET /healthz", httpx.Healthz)
	index := func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"routes": routes, "openapi": "/openapi.yaml"})
	}
	mux.HandleFunc("GET /_routes", index)
	if web != nil {
		mux.Handle("/", web)
		return mux
	}
	mux.HandleFunc("GET /{$}", index)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, log, apperr.ErrNotFound)
	})
	return mux
}

func serveProxy(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	return httpx.Serve(ctx, ln, h, 5*time.Second, log)
}

// waitHealthy polls every service's /healthz until all answer 200, a child
// exits or ctx ends.
func waitHealthy(ctx context.Context, backends map[string]string, sup *supervisor) error {
	client := &http.Client{Timeout: time.Second}
	for name, base := range backends {
		for {
			if !sup.running(name) {
				return context.Canceled
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
