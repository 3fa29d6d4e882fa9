/* libedgetpu's C interface with no usable Edge TPU behind it, for tests on machines without a
 * Coral. It exports what covid-edge calls on the real library, with the real signatures:
 *   - the TFLite external-delegate plugin API (tflite_plugin_create_delegate / _destroy_),
 *     which returns no delegate, as libedgetpu does when it cannot open a device
 *     (tflite/edgetpu_delegate_for_custom_op_tflite_plugin.cc);
 *   - edgetpu_version() and edgetpu_list_devices() / edgetpu_free_devices() from edgetpu_c.h.
 * Build flags pick the case: -DRUNTIME_VERSION=N (what edgetpu_version reports) and
 * -DDEVICES=0|1 (no device plugged in / one that cannot be opened).
 * tests/test_edgetpu_runtime.py compiles it with the system C compiler; it is never shipped. */
#include <stddef.h>

#ifndef RUNTIME_VERSION
#define RUNTIME_VERSION 14
#endif
#ifndef DEVICES
#define DEVICES 0
#endif
#define TEXT(x) #x
#define NUMBER(x) TEXT(x)

struct edgetpu_device {
  int type; /* enum edgetpu_device_type: 0 = PCI, 1 = USB */
  const char* path;
};

static struct edgetpu_device devices[1] = {{1, "/sys/bus/usb/devices/2-1"}};

const char* edgetpu_version(void) {
  return "BuildLabel(COMPILER=stub,DATE=redacted,TIME=redacted), RuntimeVersion("
         NUMBER(RUNTIME_VERSION) ")";
}

struct edgetpu_device* edgetpu_list_devices(size_t* num_devices) {
  *num_devices = DEVICES;
  return DEVICES ? devices : NULL;
}

void edgetpu_free_devices(struct edgetpu_device* dev) { (void)dev; }

void* tflite_plugin_create_delegate(char** keys, char** values, size_t num_options,
                                    void (*report_error)(const char*)) {
  (void)keys;
  (void)values;
  (void)num_options;
  (void)report_error;
  return NULL;
}

void tflite_plugin_destroy_delegate(void* delegate) { (void)delegate; }
