package proxy

import "sort"

// preset bundles the defaults of a real middlebox.
type preset struct {
	summary string
	faults  []string
}

// presets, by name. Their durations shrink with the time scale like any
// other.
var presets = map[string]preset{
	"aws-alb": {"AWS ALB: closes a client connection idle for 60 s (heartbeats keep it open)",
		[]string{"idle-timeout:hop=client,idle=60s,action=fin"}},
	"aws-nat": {"AWS NAT gateway: forgets a flow idle for 350 s, the next packet gets a RST",
		[]string{"nat-drop:hop=client,idle=350s"}},
	"nginx": {"nginx: proxy_read_timeout 60 s, no byte from the upstream for 60 s closes it",
		[]string{"idle-timeout:hop=upstream,direction=down,idle=60s,action=fin"}},
	"cloudflare": {"Cloudflare: 524 when the origin sends no headers for 100 s, and a stream idle for 100 s is closed",
		[]string{"http-status:code=524,timeout=100s", "idle-timeout:hop=upstream,direction=down,idle=100s,action=fin"}},
	"node-keepalive": {"Node.js server: keepAliveTimeout 5 s closes a client connection idle between requests (the keep-alive race)",
		[]string{"idle-timeout:hop=client,idle=5s,action=fin,scope=between-requests"}},
}

// PresetNames lists the presets in order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
