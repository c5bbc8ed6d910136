#include "revoke.h"
