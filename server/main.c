/* imapbridged: placeholder until the daemon lands. */
#include <stdio.h>
int main(void)
{
	fprintf(stderr, "imapbridged: not built yet\n");
	return 1;
}
