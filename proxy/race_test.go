//go:build race

package proxy

// raceEnabled is true in a -race build: long tests shrink their loads.
const raceEnabled = true
