/* Keeps the support archive non-empty before support/ has files. */
int lsec_test_support_stub_(void);
int lsec_test_support_stub_(void)
{
    return 0;
}
