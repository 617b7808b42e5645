module github.com/xpool-dev/xpool/examples/go

go 1.19

require (
	github.com/xpool-dev/xpool/gen/go v0.0.0
	google.golang.org/genproto v0.0.0-20200526211855-cb27e3aa2013
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

// The stubs generated from proto/ (examples/generate.sh), under the import path the protos'
// go_package names.
replace github.com/xpool-dev/xpool/gen/go => ./gen
