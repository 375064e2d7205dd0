// Command extproc-harness drives the contract of a rendered ext_proc filter config without Envoy:
// it parses the config with Envoy's own generated types (unknown fields and failed validation
// rules are errors), runs a small ext_proc screening server over real gRPC, and plays the part of
// Envoy's ext_proc client for each exchange it is given: the messages it sends for each event,
// as the processing mode says (headers, whole bodies, or each chunk as it arrives), the gRPC
// metadata, the per-message timeout and the failure mode. It reports what the server received,
// what the caller saw, in which order, and the filter's counters under Envoy's stat names.
//
// It is a stand-in for Envoy's client side, not Envoy: it shows what the config asks Envoy to do
// and that a screening service answering the protocol gets it; Envoy's own conformance is
// Envoy's tests' business.
//
// Input (stdin, JSON):
//
//	{"filter": <ExternalProcessor typed_config, protojson with @type>,
//	 "route": <FilterConfig typed_per_filter_config entry, or null>,
//	 "exchanges": [{"name": "...", "path": "/v1/chat/completions",
//	                "request": ["chunk", ...], "response": ["chunk", ...]}]}
//
// The server refuses (403) a request whose body holds "FORBIDDEN", refuses a response chunk
// holding "FORBIDDEN" by replacing it, and answers late (past any timeout) to a message holding
// "SLOW". Output (stdout, JSON): see the report type.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

type exchange struct {
	Name     string   `json:"name"`
	Path     string   `json:"path"`
	Request  []string `json:"request"`
	Response []string `json:"response"`
	Down     bool     `json:"down"` // the provider cannot be reached
}

type input struct {
	Filter    json.RawMessage `json:"filter"`
	Route     json.RawMessage `json:"route"`
	Exchanges []exchange      `json:"exchanges"`
}

// received is one message as the screening server got it.
type received struct {
	Kind        string `json:"kind"` // request_headers, request_body, response_headers, response_body
	Body        string `json:"body,omitempty"`
	EndOfStream bool   `json:"end_of_stream"`
	Path        string `json:"path,omitempty"`
}

type outcome struct {
	Name     string            `json:"name"`
	Result   string            `json:"result"`            // passed, refused (by the provider), failed (provider failure, fail-closed)
	Status   int               `json:"status"`            // what the caller got
	Body     string            `json:"body"`              // the response body the caller got
	Details  string            `json:"details,omitempty"` // a refusal's reason, Envoy's %RESPONSE_CODE_DETAILS%
	Received []received        `json:"received"`
	Timeline []string          `json:"timeline"` // "upstream <i>" (the model produced chunk i), "caller <i>" (the caller got it)
	Metadata map[string]string `json:"metadata"` // gRPC metadata the server saw
}

type report struct {
	Mode      map[string]string `json:"mode"` // the effective processing mode (route override, else the filter's)
	Timeout   string            `json:"message_timeout"`
	Exchanges []outcome         `json:"exchanges"`
	// The filter's counters, under Envoy's names (http.<listener>.ext_proc.<stat_prefix>.<name>).
	StatPrefix string         `json:"stat_prefix"`
	Stats      map[string]int `json:"stats"`
}

// --- the screening server --------------------------------------------------------------------------

type server struct {
	extproc.UnimplementedExternalProcessorServer
	mu       sync.Mutex
	streams  [][]received
	metadata []map[string]string
	delay    time.Duration
}

func (s *server) Process(stream extproc.ExternalProcessor_ProcessServer) error {
	s.mu.Lock()
	index := len(s.streams)
	s.streams = append(s.streams, nil)
	md, _ := metadata.FromIncomingContext(stream.Context())
	seen := map[string]string{}
	for k, v := range md {
		if strings.HasPrefix(k, "x-") {
			seen[k] = strings.Join(v, ",")
		}
	}
	s.metadata = append(s.metadata, seen)
	s.mu.Unlock()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		got, answer := s.answer(req)
		s.mu.Lock()
		s.streams[index] = append(s.streams[index], got)
		s.mu.Unlock()
		if strings.Contains(got.Body, "SLOW") {
			time.Sleep(s.delay)
		}
		if err := stream.Send(answer); err != nil {
			return err
		}
	}
}

func (s *server) answer(req *extproc.ProcessingRequest) (received, *extproc.ProcessingResponse) {
	cont := &extproc.CommonResponse{Status: extproc.CommonResponse_CONTINUE}
	switch r := req.Request.(type) {
	case *extproc.ProcessingRequest_RequestHeaders:
		path := ""
		for _, h := range r.RequestHeaders.GetHeaders().GetHeaders() {
			if h.Key == ":path" {
				path = string(h.RawValue)
			}
		}
		return received{Kind: "request_headers", EndOfStream: r.RequestHeaders.EndOfStream, Path: path},
			&extproc.ProcessingResponse{Response: &extproc.ProcessingResponse_RequestHeaders{
				RequestHeaders: &extproc.HeadersResponse{Response: cont}}}
	case *extproc.ProcessingRequest_RequestBody:
		got := received{Kind: "request_body", Body: string(r.RequestBody.Body), EndOfStream: r.RequestBody.EndOfStream}
		if strings.Contains(got.Body, "FORBIDDEN") {
			return got, &extproc.ProcessingResponse{Response: &extproc.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extproc.ImmediateResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
					Body:    []byte(`{"error":{"message":"refused by the safety provider","type":"safety"}}`),
					Details: "prompt_refused"}}}
		}
		return got, &extproc.ProcessingResponse{Response: &extproc.ProcessingResponse_RequestBody{
			RequestBody: &extproc.BodyResponse{Response: cont}}}
	case *extproc.ProcessingRequest_ResponseHeaders:
		return received{Kind: "response_headers", EndOfStream: r.ResponseHeaders.EndOfStream},
			&extproc.ProcessingResponse{Response: &extproc.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extproc.HeadersResponse{Response: cont}}}
	case *extproc.ProcessingRequest_ResponseBody:
		got := received{Kind: "response_body", Body: string(r.ResponseBody.Body), EndOfStream: r.ResponseBody.EndOfStream}
		common := cont
		if strings.Contains(got.Body, "FORBIDDEN") {
			common = &extproc.CommonResponse{Status: extproc.CommonResponse_CONTINUE, BodyMutation: &extproc.BodyMutation{
				Mutation: &extproc.BodyMutation_Body{Body: []byte("[withheld by the safety provider]")}}}
		}
		return got, &extproc.ProcessingResponse{Response: &extproc.ProcessingResponse_ResponseBody{
			ResponseBody: &extproc.BodyResponse{Response: common}}}
	}
	return received{Kind: "other"}, &extproc.ProcessingResponse{}
}

// --- Envoy's side ----------------------------------------------------------------------------------

type client struct {
	conn     *grpc.ClientConn
	downConn *grpc.ClientConn // to an address nothing listens on
	mode     *extprocfilter.ProcessingMode
	timeout  time.Duration
	failOpen bool
	metadata map[string]string
	stats    map[string]int
}

var errTimeout = errors.New("message timeout")

// call sends one message on the exchange's stream and waits for its answer, at most the message
// timeout.
func (c *client) call(stream extproc.ExternalProcessor_ProcessClient, req *extproc.ProcessingRequest) (*extproc.ProcessingResponse, error) {
	if err := stream.Send(req); err != nil {
		return nil, err
	}
	c.stats["stream_msgs_sent"]++
	type result struct {
		resp *extproc.ProcessingResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := stream.Recv()
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			c.stats["stream_msgs_received"]++
		}
		return r.resp, r.err
	case <-time.After(c.timeout):
		c.stats["message_timeouts"]++
		return nil, errTimeout
	}
}

func headerMap(pairs ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: pairs[i], RawValue: []byte(pairs[i+1])})
	}
	return m
}

// run plays one exchange: the caller's request, the model's response, through the filter.
func (c *client) run(ex exchange) outcome {
	out := outcome{Name: ex.Name, Status: 200}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pairs := []string{}
	for k, v := range c.metadata {
		pairs = append(pairs, k, v)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, pairs...)
	conn := c.conn
	if ex.Down {
		conn = c.downConn
	}
	stream, err := extproc.NewExternalProcessorClient(conn).Process(ctx)
	c.stats["streams_started"]++
	// A provider failure: fail-open lets the rest through unscreened; fail-closed refuses, as
	// Envoy does: 504 when the provider is too slow, 500 when the stream fails.
	failed := func(err error) bool {
		status := 504
		if !errors.Is(err, errTimeout) {
			c.stats["streams_failed"]++
			status = 500
		}
		if c.failOpen {
			c.stats["failure_mode_allowed"]++
			return false
		}
		out.Result, out.Status, out.Body = "failed", status, "ext_proc error"
		return true
	}
	screening := err == nil
	if !screening && failed(err) {
		return out
	}
	send := func(req *extproc.ProcessingRequest) (*extproc.ProcessingResponse, bool) {
		if !screening {
			return nil, false
		}
		resp, err := c.call(stream, req)
		if err != nil {
			screening = false
			if failed(err) {
				return nil, true
			}
			return nil, false
		}
		if imm := resp.GetImmediateResponse(); imm != nil {
			out.Result, out.Status, out.Body = "refused", int(imm.GetStatus().GetCode()), string(imm.Body)
			out.Details = imm.Details
			return resp, true
		}
		return resp, false
	}
	request := strings.Join(ex.Request, "")
	if c.mode.RequestHeaderMode == extprocfilter.ProcessingMode_SEND {
		if _, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extproc.HttpHeaders{Headers: headerMap(":method", "POST", ":path", ex.Path,
				"content-type", "application/json")}}}); stop {
			return c.finish(out, stream)
		}
	}
	switch c.mode.RequestBodyMode {
	case extprocfilter.ProcessingMode_BUFFERED:
		if _, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_RequestBody{
			RequestBody: &extproc.HttpBody{Body: []byte(request), EndOfStream: true}}}); stop {
			return c.finish(out, stream)
		}
	case extprocfilter.ProcessingMode_STREAMED:
		for i, chunk := range ex.Request {
			if _, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_RequestBody{
				RequestBody: &extproc.HttpBody{Body: []byte(chunk), EndOfStream: i == len(ex.Request)-1}}}); stop {
				return c.finish(out, stream)
			}
		}
	}
	// The model answered: its headers, then its body as it produces it.
	if c.mode.ResponseHeaderMode == extprocfilter.ProcessingMode_SEND {
		if _, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extproc.HttpHeaders{Headers: headerMap(":status", "200",
				"content-type", "text/event-stream")}}}); stop {
			return c.finish(out, stream)
		}
	}
	var body bytes.Buffer
	deliver := func(i int, chunk []byte) {
		body.Write(chunk)
		out.Timeline = append(out.Timeline, fmt.Sprintf("caller %d", i))
	}
	mutated := func(resp *extproc.ProcessingResponse, chunk []byte) []byte {
		if m := resp.GetResponseBody().GetResponse().GetBodyMutation(); m != nil {
			return m.GetBody()
		}
		return chunk
	}
	switch c.mode.ResponseBodyMode {
	case extprocfilter.ProcessingMode_STREAMED:
		for i, chunk := range ex.Response {
			out.Timeline = append(out.Timeline, fmt.Sprintf("upstream %d", i))
			resp, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_ResponseBody{
				ResponseBody: &extproc.HttpBody{Body: []byte(chunk), EndOfStream: i == len(ex.Response)-1}}})
			if stop {
				return c.finish(out, stream)
			}
			if resp != nil {
				deliver(i, mutated(resp, []byte(chunk)))
			} else {
				deliver(i, []byte(chunk))
			}
		}
	case extprocfilter.ProcessingMode_BUFFERED:
		for i := range ex.Response {
			out.Timeline = append(out.Timeline, fmt.Sprintf("upstream %d", i))
		}
		whole := []byte(strings.Join(ex.Response, ""))
		resp, stop := send(&extproc.ProcessingRequest{Request: &extproc.ProcessingRequest_ResponseBody{
			ResponseBody: &extproc.HttpBody{Body: whole, EndOfStream: true}}})
		if stop {
			return c.finish(out, stream)
		}
		if resp != nil {
			whole = mutated(resp, whole)
		}
		deliver(len(ex.Response)-1, whole)
	default:
		for i, chunk := range ex.Response {
			out.Timeline = append(out.Timeline, fmt.Sprintf("upstream %d", i))
			deliver(i, []byte(chunk))
		}
	}
	out.Result, out.Body = "passed", body.String()
	return c.finish(out, stream)
}

func (c *client) finish(out outcome, stream extproc.ExternalProcessor_ProcessClient) outcome {
	if stream != nil {
		_ = stream.CloseSend()
	}
	return out
}

// --- main ------------------------------------------------------------------------------------------

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "extproc-harness: "+format+"\n", args...)
	os.Exit(2)
}

// strict parses protojson the way Envoy's config loader does: unknown fields are errors.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

// validated is a config message Envoy checks with its validation rules when it loads it.
type validated interface {
	proto.Message
	ValidateAll() error
}

// unpack reads an Any into msg and applies Envoy's validation rules, as Envoy's config loader
// does; what names the config and kind the message in a failure.
func unpack(any *anypb.Any, msg validated, what, kind string) {
	if err := any.UnmarshalTo(msg); err != nil {
		fail("%s is not %s: %v", what, kind, err)
	}
	if err := msg.ValidateAll(); err != nil {
		fail("%s breaks Envoy's validation rules: %v", what, err)
	}
}

func parseFilter(raw json.RawMessage) *extprocfilter.ExternalProcessor {
	var any anypb.Any
	if err := strict.Unmarshal(raw, &any); err != nil {
		fail("filter config: %v", err)
	}
	var filter extprocfilter.ExternalProcessor
	unpack(&any, &filter, "filter config", "an ExternalProcessor")
	return &filter
}

func parseRoute(raw json.RawMessage) *extprocfilter.ExtProcPerRoute {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var any anypb.Any
	if err := strict.Unmarshal(raw, &any); err != nil {
		fail("route config: %v", err)
	}
	var wrapper routev3.FilterConfig
	unpack(&any, &wrapper, "route config", "a FilterConfig")
	if wrapper.Disabled {
		fail("the route turns the filter off")
	}
	var perRoute extprocfilter.ExtProcPerRoute
	unpack(wrapper.Config, &perRoute, "route config's config", "an ExtProcPerRoute")
	return &perRoute
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	filter := parseFilter(in.Filter)
	mode := filter.GetProcessingMode()
	if perRoute := parseRoute(in.Route); perRoute != nil && perRoute.GetOverrides().GetProcessingMode() != nil {
		mode = perRoute.GetOverrides().GetProcessingMode()
	}
	if mode == nil { // Envoy's default: headers both ways, no bodies.
		mode = &extprocfilter.ProcessingMode{}
	}
	timeout := 200 * time.Millisecond // Envoy's default message_timeout
	if filter.MessageTimeout != nil {
		timeout = filter.MessageTimeout.AsDuration()
	}
	if filter.GetGrpcService().GetEnvoyGrpc().GetClusterName() == "" {
		fail("the filter names no Envoy cluster to call")
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	srv := &server{delay: timeout + 300*time.Millisecond}
	grpcServer := grpc.NewServer()
	extproc.RegisterExternalProcessorServer(grpcServer, srv)
	go func() { _ = grpcServer.Serve(listener) }()
	defer grpcServer.Stop()

	conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(filter.GetGrpcService().GetEnvoyGrpc().GetAuthority()))
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	// Nothing listens on a port just closed: what an unreachable provider looks like.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	downAddr := closed.Addr().String()
	closed.Close()
	downConn, err := grpc.NewClient(downAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("dial: %v", err)
	}
	defer downConn.Close()
	md := map[string]string{}
	for _, h := range filter.GetGrpcService().GetInitialMetadata() {
		md[h.Key] = h.Value
	}
	c := &client{conn: conn, downConn: downConn, mode: mode, timeout: timeout, failOpen: filter.FailureModeAllow, metadata: md,
		stats: map[string]int{}}
	rep := report{Timeout: timeout.String(), StatPrefix: filter.StatPrefix, Stats: c.stats, Mode: map[string]string{
		"request_header_mode":  mode.RequestHeaderMode.String(),
		"response_header_mode": mode.ResponseHeaderMode.String(),
		"request_body_mode":    mode.RequestBodyMode.String(),
		"response_body_mode":   mode.ResponseBodyMode.String(),
	}}
	for _, ex := range in.Exchanges {
		before := len(srv.streams)
		out := c.run(ex)
		// The server records asynchronously: wait for the stream it got to settle.
		time.Sleep(50 * time.Millisecond)
		srv.mu.Lock()
		if len(srv.streams) > before {
			out.Received = srv.streams[before]
			out.Metadata = srv.metadata[before]
		}
		srv.mu.Unlock()
		if out.Received == nil {
			out.Received = []received{}
		}
		rep.Exchanges = append(rep.Exchanges, out)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(rep); err != nil {
		fail("output: %v", err)
	}
}
