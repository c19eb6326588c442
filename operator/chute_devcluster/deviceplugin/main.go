// Command chute-gpu-device-plugin advertises simulated GPUs to the kubelet through the
// device-plugin gRPC API (v1beta1), so pods asking for nvidia.com/gpu can run on a machine
// without GPUs. Allocate mounts no device: it only sets NVIDIA_VISIBLE_DEVICES to the fake IDs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
	stop    chan struct{}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the device list once and keeps the stream open: simulated GPUs never change.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	select {
	case <-stream.Context().Done():
	case <-p.stop:
	}
	return nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

// Allocate mounts nothing (the containers run on CPU) and names the fake devices in the environment.
func (p *plugin) Allocate(_ context.Context, request *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	response := &pluginapi.AllocateResponse{}
	for _, container := range request.ContainerRequests {
		ids := strings.Join(container.DevicesIds, ",")
		log.Printf("allocate %s", ids)
		response.ContainerResponses = append(response.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": ids, "CHUTES_SIMULATED_GPU": "true"},
		})
	}
	return response, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// serve listens on socket and registers with the kubelet; it returns once the socket is gone
// (the kubelet removes plugin sockets when it restarts) so the caller can register again.
func serve(dir, socketName, resource string, count int, stop chan struct{}) error {
	socket := filepath.Join(dir, socketName)
	kubeletSocket := filepath.Join(dir, "kubelet.sock")
	// The kubelet empties the directory when it starts: listen only once its own socket is there.
	for {
		if _, err := os.Stat(kubeletSocket); err == nil {
			break
		}
		select {
		case <-stop:
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	devices := make([]*pluginapi.Device, count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("sim-gpu-%d", i), Health: pluginapi.Healthy}
	}
	server := grpc.NewServer()
	done := make(chan struct{})
	pluginapi.RegisterDevicePluginServer(server, &plugin{devices: devices, stop: done})
	go func() { _ = server.Serve(listener) }()
	defer func() { close(done); server.Stop() }()

	if err := register(kubeletSocket, socket, socketName, resource, stop); err != nil {
		return err
	}
	log.Printf("registered %s with %d devices on %s", resource, count, socket)
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(time.Second):
		}
		if _, err := os.Stat(socket); err != nil {
			log.Printf("%s is gone (kubelet restarted?); registering again", socket)
			return nil
		}
	}
}

func register(kubeletSocket, socket, socketName, resource string, stop chan struct{}) error {
	for {
		if _, err := os.Stat(socket); err != nil {
			return fmt.Errorf("%s is gone before registering: %w", socket, err)
		}
		conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
				Version:      pluginapi.Version,
				Endpoint:     socketName,
				ResourceName: resource,
			})
			cancel()
			_ = conn.Close()
			if err == nil {
				return nil
			}
		}
		log.Printf("register with %s: %v; retrying", kubeletSocket, err)
		select {
		case <-stop:
			return errors.New("stopped before registering")
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func main() {
	dir := flag.String("device-plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource to advertise")
	count := flag.Int("count", 4, "how many simulated devices")
	socketName := flag.String("socket", "chute-sim-gpu.sock", "this plugin's socket name in the directory")
	flag.Parse()
	log.SetPrefix("chute-gpu-device-plugin: ")

	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; close(stop) }()
	for {
		if err := serve(*dir, *socketName, *resource, *count, stop); err != nil {
			log.Printf("%v", err)
		}
		select {
		case <-stop:
			_ = os.Remove(filepath.Join(*dir, *socketName))
			return
		case <-time.After(time.Second):
		}
	}
}
