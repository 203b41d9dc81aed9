package main

import (
	"context"
	"fmt"
	"io"
)

func cmdEmulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return fmt.Errorf("%w: no emulator is built in yet", errUsage)
}
