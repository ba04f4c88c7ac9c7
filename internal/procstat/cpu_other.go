//go:build !unix

package procstat

func selfCPU() (CPUTimes, error) { return CPUTimes{}, ErrUnsupported }
