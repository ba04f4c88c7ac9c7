package metrics

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads the text format with Prometheus' own parser, with the strict
// (legacy) name rules every Prometheus version accepts.
func parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the exposition: %v", err)
	}
	return fams
}

// TestWriteParsesWithPrometheus: counters, gauges, labels that need
// escaping, help text with a newline and special values come back
// unchanged through expfmt.
func TestWriteParsesWithPrometheus(t *testing.T) {
	errs := Family{Name: "ssestress_errors_total", Help: "Errors by class.\nSecond line \\ with a backslash.", Kind: Counter,
		Samples: CountsByLabel(map[string]int64{"ECONNRESET": 3, "H2_RST_STREAM:INTERNAL_ERROR": 2, `we"ird\name` + "\n": 1},
			"class", Label{"hop", "client"})}
	fams := []Family{
		One("ssestress_messages_total", "Events.", Counter, 12345678),
		One("ssestress_streams_active", "Open streams.", Gauge, 20),
		errs,
		One("ssestress_nan", "", Gauge, math.NaN()),
		One("ssestress_big", "", Gauge, 1.5e300),
		{Name: "ssestress_empty", Help: "no samples yet", Kind: Counter},
	}
	var b strings.Builder
	if err := Write(&b, fams); err != nil {
		t.Fatal(err)
	}
	got := parse(t, strings.NewReader(b.String()))
	if v := got["ssestress_messages_total"].GetMetric()[0].GetCounter().GetValue(); v != 12345678 {
		t.Errorf("messages %v", v)
	}
	if got["ssestress_streams_active"].GetType() != dto.MetricType_GAUGE {
		t.Error("streams_active is not a gauge")
	}
	e := got["ssestress_errors_total"]
	if e.GetType() != dto.MetricType_COUNTER || e.GetHelp() != errs.Help || len(e.GetMetric()) != 3 {
		t.Fatalf("errors family %v", e)
	}
	byClass := map[string]float64{}
	for _, m := range e.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["hop"] != "client" {
			t.Errorf("labels %v", labels)
		}
		byClass[labels["class"]] = m.GetCounter().GetValue()
	}
	if byClass["ECONNRESET"] != 3 || byClass["H2_RST_STREAM:INTERNAL_ERROR"] != 2 || byClass[`we"ird\name`+"\n"] != 1 {
		t.Errorf("by class %v", byClass)
	}
	if !math.IsNaN(got["ssestress_nan"].GetMetric()[0].GetGauge().GetValue()) || got["ssestress_big"].GetMetric()[0].GetGauge().GetValue() != 1.5e300 {
		t.Error("special values changed")
	}
	if !strings.Contains(b.String(), "ssestress_messages_total 12345678\n") {
		t.Errorf("an integer count is not written as one:\n%s", b.String())
	}
}

// TestWriteRefusesInvalid: names Prometheus would refuse never go out.
func TestWriteRefusesInvalid(t *testing.T) {
	for _, fams := range [][]Family{
		{One("1bad", "", Gauge, 1)},
		{One("bad-name", "", Gauge, 1)},
		{One("ok", "", Gauge, 1), One("ok", "", Gauge, 2)},
		{{Name: "ok", Samples: []Sample{{Labels: L("bad label", "x")}}}},
		{{Name: "ok", Samples: []Sample{{Labels: L("__reserved", "x")}}}},
	} {
		if err := Write(io.Discard, fams); err == nil {
			t.Errorf("%+v was written", fams)
		}
	}
}

// TestHandlerAndProcess: the handler serves the text format on a real
// socket, built at each scrape, and this process's own figures are there.
func TestHandlerAndProcess(t *testing.T) {
	scrapes := 0
	srv := httptest.NewServer(Handler(func() []Family {
		scrapes++
		return append([]Family{One("ssestress_scrapes_total", "", Counter, float64(scrapes))}, ProcessFamilies(Self(), Process{Role: "server", PID: 1 << 30})...)
	}))
	defer srv.Close()
	for want := 1; want <= 2; want++ {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != ContentType {
			t.Errorf("content type %q", ct)
		}
		fams := parse(t, resp.Body)
		resp.Body.Close()
		if v := fams["ssestress_scrapes_total"].GetMetric()[0].GetCounter().GetValue(); v != float64(want) {
			t.Fatalf("scrape %d reads %v: not built at scrape time", want, v)
		}
		up := map[string]float64{}
		for _, m := range fams["ssestress_process_up"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" {
					up[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		if _, err := os.Stat("/proc/self/status"); err == nil {
			if up["ssestress"] != 1 || up["server"] != 0 {
				t.Fatalf("process_up %v: self readable, a missing pid not", up)
			}
			rss := fams["ssestress_process_resident_memory_bytes"].GetMetric()
			if len(rss) != 1 || rss[0].GetGauge().GetValue() <= 0 || rss[0].GetLabel()[1].GetValue() != strconv.Itoa(os.Getpid()) {
				t.Fatalf("rss %v", rss)
			}
		}
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}
