/* A downstream program: includes only <loopsec.h>, uses a few calls. */
#include <loopsec.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char norm[LSEC_ADDR_MAX];
    if (lsec_addr_check("localhost:8080", 0, norm, sizeof(norm)) != 0 ||
        strcmp(norm, "127.0.0.1:8080") != 0)
        return 1;
    if (lsec_addr_check("0.0.0.0:8080", 0, NULL, 0) != LSEC_ENOTLOOPBACK)
        return 1;
    if (strcmp(lsec_version(), LSEC_VERSION_STRING) != 0)
        return 1;
    printf("loopsec %s ok\n", lsec_version());
    return 0;
}
